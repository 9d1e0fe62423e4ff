# DINO (5 feature scales) + SwinV2-L, window 24, COCO, 36 epochs multi-scale, AdamW: the recipe
# of mmdet's Swin-L DINO (dino-5scale_swin-l_8xb2-36e_coco.py).
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use.
# Changes from ./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py: arch large, window 24, the 22k
# weights, with_cp on (as mmdet's Swin-L DINO), and the 36-epoch schedule of
# dino-5scale_swin-l_8xb2-36e_coco.py (steps at epochs 27 and 33).
_base_ = ['./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py', '../_base_/models/swinv2-l-w24.py']

model = dict(
    backbone=dict(_base_.swinv2_l_w24.backbone, with_cp=True),
    neck=dict(in_channels=_base_.swinv2_l_w24.channels))

max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
