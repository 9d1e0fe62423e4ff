# Mask R-CNN + FPN, SwinV2-B, window 16, COCO, 1x schedule.
# Weights: SwinV2-B, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-b-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./mask-rcnn_swinv2-t-w16_fpn_1x_coco.py: arch base (128-1024 channels), drop path 0.3.
_base_ = ['./mask-rcnn_swinv2-t-w16_fpn_1x_coco.py', '../_base_/models/swinv2-b-w16.py']
model = dict(
    backbone=dict(_base_.swinv2_b_w16.backbone, drop_path_rate=0.3),
    neck=dict(in_channels=_base_.swinv2_b_w16.channels))
