# A nano SwinV2 (embed 32, depths 2-2-2-2), window 4, from scratch: the demos' model, which
# trains on 2 CPU cores in minutes.
swinv2_nano_w4 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16)),
        window_size=4),
    channels=[32, 64, 128, 256])
