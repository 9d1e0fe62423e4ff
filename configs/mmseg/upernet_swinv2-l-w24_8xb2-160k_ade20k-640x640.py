# UperNet, SwinV2-L, window 24, ADE20K 640x640, 160k iterations.
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use.
#   The 20x20 last map at 640 px runs one 20x20 window, as the official code does.
# Changes from ./upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py: arch large, window 24, the
# 22k weights, the pipelines of mmseg's ade20k_640x640 dataset config.
_base_ = ['./upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py', '../_base_/models/swinv2-l-w24.py']
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_base_.swinv2_l_w24.backbone),
    decode_head=dict(in_channels=_base_.swinv2_l_w24.channels),
    auxiliary_head=dict(in_channels=_base_.swinv2_l_w24.channels[2]))

# mmseg's ade20k_640x640 pipelines (a dataset base cannot be mixed in: bases may not share keys)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2560, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
