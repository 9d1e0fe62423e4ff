# HTC (with its semantic branch) + FPN, SwinV2-B, window 24, COCO, 20 epochs with multi-scale
# training (shorter side 400-1400), AdamW: the HTC settings mmdet provides for the SwinV2 paper's
# detection results.
# Weights: SwinV2-B, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-b-w24.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's htc/htc_x101-64x4d-dconv-c3-c5_fpn_ms-400-1400-16xb1-20e_coco.py: the
# SwinV2-B backbone (with_cp on: activation checkpointing for the large images), AdamW (lr 1e-4,
# weight decay 0.05, none on norms, CPB MLPs, logit scales, q/v biases) instead of SGD, and
# Soft-NMS in the R-CNN test stage.
# What differs from the paper's HTC++ (SwinV2-G, 63.1 box / 54.4 mask mAP): no SimMIM or
# Objects365 pre-training, no instaboost, no window 32 / 1536 px training, no multi-scale testing,
# a smaller backbone. The stuff maps of the semantic branch are COCO-stuff's
# (stuffthingmaps/{train,val}2017/*.png), as in mmdet's HTC.
_base_ = ['mmdet::htc/htc_x101-64x4d-dconv-c3-c5_fpn_ms-400-1400-16xb1-20e_coco.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-b-w24.py']

model = dict(
    backbone=dict(
        _base_.swinv2_b_w24.backbone, _delete_=True, drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        with_cp=True),
    neck=dict(in_channels=_base_.swinv2_b_w24.channels),
    test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5))))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
