# Cascade Mask R-CNN + FPN, SwinV2-T, window 16, COCO, 3x multi-scale, AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py: the SwinV2 backbone,
# AdamW (lr 1e-4, weight decay 0.05, none on SwinV2-specific parameters) instead of SGD.
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16.py']

model = dict(
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.2, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=_base_.swinv2_t_w16.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
