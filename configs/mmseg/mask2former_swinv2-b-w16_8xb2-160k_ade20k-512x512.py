# Mask2Former, SwinV2-B, window 16, ADE20K 512x512, 160k iterations, AdamW.
# Weights: SwinV2-B, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-b-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./mask2former_swinv2-t-w16_8xb2-160k_ade20k-512x512.py: arch base and its weights.
_base_ = ['./mask2former_swinv2-t-w16_8xb2-160k_ade20k-512x512.py',
          '../_base_/models/swinv2-b-w16.py']

model = dict(
    backbone=dict(_base_.swinv2_b_w16.backbone),
    decode_head=dict(in_channels=_base_.swinv2_b_w16.channels))
