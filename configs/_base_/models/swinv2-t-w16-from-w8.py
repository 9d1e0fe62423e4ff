# SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 8: the
# CPB carries the pretrained window's coordinates over to window 16.
swinv2_t_w16_from_w8 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(8, 8, 8, 8),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth')),
    channels=[96, 192, 384, 768])
