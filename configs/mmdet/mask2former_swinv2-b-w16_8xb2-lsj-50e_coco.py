# Mask2Former + SwinV2-B, window 16, COCO instance segmentation, 50 epochs with large-scale jitter, AdamW.
# Weights: SwinV2-B, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-b-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py: arch base and its weights.
_base_ = ['./mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py', '../_base_/models/swinv2-b-w16.py']

model = dict(
    backbone=dict(_base_.swinv2_b_w16.backbone),
    panoptic_head=dict(in_channels=_base_.swinv2_b_w16.channels))
