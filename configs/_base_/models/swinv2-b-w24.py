# SwinV2-B, window 24, from the official ImageNet-22k release at 192 px with window 12 (6 in
# its last stage).
swinv2_b_w24 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='base',
        window_size=24,
        pretrained_window_sizes=(12, 12, 12, 6),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window12_192_22k.pth')),
    channels=[128, 256, 512, 1024])
