# Mask R-CNN + FPN, SwinV2-T, window 16, COCO, 3x schedule (36 epochs) with multi-scale
# training and random crops (mmdet's Swin recipe), AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py: the SwinV2 backbone
# and no weight decay on the SwinV2-specific parameters (as ./mask-rcnn_swinv2-t-w16_fpn_1x_coco.py).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16.py']

model = dict(
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.2, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=_base_.swinv2_t_w16.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
