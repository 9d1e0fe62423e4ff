# HTC (with its semantic branch) + FPN, SwinV2-L, window 24, COCO, 20 epochs multi-scale, AdamW.
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use.
# Changes from ./htc_swinv2-b-w24_fpn_ms-400-1400-16xb1-20e_coco.py: arch large and its weights
# (what differs from the paper's HTC++ is listed there).
_base_ = ['./htc_swinv2-b-w24_fpn_ms-400-1400-16xb1-20e_coco.py',
          '../_base_/models/swinv2-l-w24.py']

model = dict(
    backbone=dict(_base_.swinv2_l_w24.backbone),
    neck=dict(in_channels=_base_.swinv2_l_w24.channels))
