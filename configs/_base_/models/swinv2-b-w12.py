# SwinV2-B, window 12, from scratch (SimMIM pretraining at 192 px).
swinv2_b_w12 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='base',
        window_size=12),
    channels=[128, 256, 512, 1024])
