# SwinV2-S, window 16, from the official ImageNet-1k release at 256 px with window 16.
swinv2_s_w16 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='small',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window16_256.pth')),
    channels=[96, 192, 384, 768])
