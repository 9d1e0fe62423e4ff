# SwinV2-T, window 12, from scratch (SimMIM pretraining at 192 px).
swinv2_t_w12 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='tiny',
        window_size=12),
    channels=[96, 192, 384, 768])
