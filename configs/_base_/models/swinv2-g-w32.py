# SwinV2-G, window 32: no public weights (pretrain it, e.g. with SimMIM, and point init_cfg
# at the result).
swinv2_g_w32 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='giant',
        window_size=32,
        pretrained_window_sizes=0,
        init_cfg=None),
    channels=[512, 1024, 2048, 4096])
