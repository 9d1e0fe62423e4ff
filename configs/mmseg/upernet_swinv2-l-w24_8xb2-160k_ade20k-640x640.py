# UperNet, SwinV2-L, window 24, ADE20K 640x640, 160k iterations.
# Weights: the ImageNet-22k window-12 release at 192 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth
#   downloaded into torch.hub's cache on first use. At 192 px its last stage ran a
#   6x6 window, hence pretrained_window_sizes (12, 12, 12, 6); the CPB extrapolates to window 24
#   (the 20x20 last map at 640 px runs one 20x20 window, as the official code does).
# Changes from ./upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py: arch large, window 24, the
# 22k weights, the pipelines of mmseg's ade20k_640x640 dataset config.
_base_ = './upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py'
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='large', window_size=24, pretrained_window_sizes=(12, 12, 12, 6),
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))

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
