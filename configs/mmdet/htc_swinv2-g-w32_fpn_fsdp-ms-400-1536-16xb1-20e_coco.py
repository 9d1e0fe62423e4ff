# HTC + FPN, SwinV2-G (3.0 billion parameters), window 32, COCO, 20 epochs multi-scale up to
# 1536 px (the paper's detection window and size), trained with FSDP (16 GPUs x 1 image).
# Memory per GPU, backbone only, estimated by tools/estimate_memory.py (fake CUDA tensors, no
# GPU measured it): at 1536x1536, 1 image, 8 ranks, with_cp on: 17.4 GiB under FSDP; DDP would
# need 66.1 GiB (134.5 without with_cp, FSDP 85.8): FSDP with with_cp is what fits 40 GB GPUs.
# No pretrained weights: SwinV2-G's were never released. init_cfg is None; load your own
# SwinV2-G weights (converted by tools/convert_checkpoint.py) with init_cfg=dict(
# type='Pretrained', checkpoint=PATH).
# Changes from ./htc_swinv2-l-w24_fpn_fsdp-ms-400-1400-16xb1-20e_coco.py: arch giant (a norm
# every 6 blocks), window 32, the FPN's inputs, multi-scale training with the longer side up to
# 1536. What differs from the paper's HTC++: no SimMIM / Objects365 pre-training, no
# instaboost, no multi-scale testing, mmdet's single-scale test resize.
_base_ = ['./htc_swinv2-l-w24_fpn_fsdp-ms-400-1400-16xb1-20e_coco.py',
          '../_base_/models/swinv2-g-w32.py']

model = dict(
    backbone=dict(_base_.swinv2_g_w32.backbone),
    neck=dict(in_channels=_base_.swinv2_g_w32.channels))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomResize', scale=[(1536, 400), (1536, 1536)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
