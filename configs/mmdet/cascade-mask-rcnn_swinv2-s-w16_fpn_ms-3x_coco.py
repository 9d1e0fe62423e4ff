# Cascade Mask R-CNN + FPN, SwinV2-S, window 16, COCO, 3x multi-scale.
# Weights: SwinV2-S, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-s-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py: arch small, drop path 0.3.
_base_ = ['./cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py', '../_base_/models/swinv2-s-w16.py']
model = dict(backbone=dict(_base_.swinv2_s_w16.backbone, drop_path_rate=0.3))
