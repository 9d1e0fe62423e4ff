# HTC (with its semantic branch) + FPN, SwinV2-L, window 24, COCO, 20 epochs multi-scale, AdamW.
# Weights: the official SwinV2-L ImageNet-22k window-12 release at 192 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth
#   downloaded into torch.hub's cache on first use (loaded as is);
#   pretrained_window_sizes (12, 12, 12, 6) as for -B.
# Changes from ./htc_swinv2-b-w24_fpn_ms-400-1400-16xb1-20e_coco.py: arch large and its weights
# (what differs from the paper's HTC++ is listed there).
_base_ = './htc_swinv2-b-w24_fpn_ms-400-1400-16xb1-20e_coco.py'

model = dict(
    backbone=dict(arch='large',
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
