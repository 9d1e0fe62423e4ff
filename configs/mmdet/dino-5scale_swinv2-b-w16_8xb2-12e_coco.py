# DINO (5 feature scales) + SwinV2-B, window 16, COCO, 12 epochs, AdamW.
# Weights: the official SwinV2-B window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is).
#   At 256 px its last stage ran an 8x8 window, hence pretrained_window_sizes (16, 16, 16, 8).
# Changes from ./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py: arch base and its weights.
_base_ = './dino-5scale_swinv2-t-w16_8xb2-12e_coco.py'

model = dict(
    backbone=dict(arch='base',
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
