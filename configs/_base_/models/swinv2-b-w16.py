# SwinV2-B, window 16, from the official ImageNet-1k release at 256 px with window 16.
swinv2_b_w16 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='base',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth')),
    channels=[128, 256, 512, 1024])
