# DINO (5 feature scales) + SwinV2-B, window 16, COCO, 12 epochs, AdamW.
# Weights: SwinV2-B, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-b-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py: arch base and its weights.
_base_ = ['./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py', '../_base_/models/swinv2-b-w16.py']

model = dict(
    backbone=dict(_base_.swinv2_b_w16.backbone),
    neck=dict(in_channels=_base_.swinv2_b_w16.channels))
