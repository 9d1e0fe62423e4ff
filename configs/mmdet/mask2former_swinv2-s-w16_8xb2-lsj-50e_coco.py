# Mask2Former + SwinV2-S, window 16, COCO instance segmentation, 50 epochs with large-scale jitter, AdamW.
# Weights: SwinV2-S, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-s-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py: arch small and its weights.
_base_ = ['./mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py', '../_base_/models/swinv2-s-w16.py']

model = dict(
    backbone=dict(_base_.swinv2_s_w16.backbone))
