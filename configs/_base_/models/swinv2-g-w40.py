# SwinV2-G, window 40: no public weights (pretrain it, e.g. with SimMIM, and point init_cfg
# at the result).
swinv2_g_w40 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='giant',
        window_size=40,
        pretrained_window_sizes=0,
        init_cfg=None),
    channels=[512, 1024, 2048, 4096])
