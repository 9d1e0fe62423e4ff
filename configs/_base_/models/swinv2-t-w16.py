# SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16 (its
# last stage ran an 8x8 window there, hence pretrained_window_sizes).
swinv2_t_w16 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth')),
    channels=[96, 192, 384, 768])
