# UperNet, SwinV2-S, window 16, ADE20K 512x512, 160k iterations.
# Weights: SwinV2-S, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-s-w16.py), downloaded into torch.hub's cache on first use.
# Changes from ./upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py: arch small.
_base_ = ['./upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py', '../_base_/models/swinv2-s-w16.py']
model = dict(backbone=dict(_base_.swinv2_s_w16.backbone))
