# RetinaNet + FPN (from stride 8), SwinV2-T, window 16, COCO, 1x schedule, AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 8
#   (../_base_/models/swinv2-t-w16-from-w8.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py: the SwinV2 backbone, AdamW
# (lr 1e-4, weight decay 0.05, none on SwinV2-specific parameters) instead of SGD.
_base_ = ['mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16-from-w8.py']

model = dict(
    backbone=dict(
        _base_.swinv2_t_w16_from_w8.backbone, _delete_=True, drop_path_rate=0.2,
        out_indices=(1, 2, 3)),
    neck=dict(in_channels=_base_.swinv2_t_w16_from_w8.channels[1:]))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
