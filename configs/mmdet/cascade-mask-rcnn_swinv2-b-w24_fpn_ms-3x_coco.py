# Cascade Mask R-CNN + FPN, SwinV2-B, window 24, COCO, 3x multi-scale.
# Weights: SwinV2-B, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-b-w24.py), downloaded into torch.hub's cache on first use.
# Changes from ./cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py: arch base, window 24, the
# 22k weights, drop path 0.3.
_base_ = ['./cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py', '../_base_/models/swinv2-b-w24.py']
model = dict(
    backbone=dict(_base_.swinv2_b_w24.backbone, drop_path_rate=0.3),
    neck=dict(in_channels=_base_.swinv2_b_w24.channels))
