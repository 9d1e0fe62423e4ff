# SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12 (6 in
# its last stage).
swinv2_l_w24 = dict(
    backbone=dict(
        type='SwinV2Backbone',
        arch='large',
        window_size=24,
        pretrained_window_sizes=(12, 12, 12, 6),
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth')),
    channels=[192, 384, 768, 1536])
