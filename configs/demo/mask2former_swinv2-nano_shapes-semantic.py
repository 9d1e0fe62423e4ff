# Demo: a small SwinV2 Mask2Former for semantic segmentation on the ADE20K-format twin of the
# synthetic shapes dataset (devkit/synthetic.py) on a CPU. No pretrained weights.
# Changes from mmseg's mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py: SwinV2
# backbone (embed_dim 32, window 4), 1 pixel-decoder and 3 transformer-decoder layers, 20
# queries, 4 classes (background + 3 shapes), 128 px images, light pipeline, iteration-based
# AdamW.
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
          '../_base_/models/swinv2-nano-w4.py',
          '../_base_/swinv2_recipe.py']
# the host base imports mmdet.models (its pixel decoder and losses); this package beside it
custom_imports = dict(imports=['mmdet.models', 'swinv2_backbone'], allow_failed_imports=False)

data_root = 'demo_out/data/ade/'
classes = ('background', 'circle', 'square', 'triangle')
palette = [[120, 120, 120], [220, 60, 50], [50, 170, 70], [60, 90, 220]]
max_iters = 400
image_size = (128, 128)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=image_size),
    backbone=dict(
        _base_.swinv2_nano_w4.backbone, _delete_=True, drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        in_channels=_base_.swinv2_nano_w4.channels, num_classes=len(classes), num_queries=20,
        loss_cls=dict(class_weight=[1.0] * len(classes) + [0.1]),
        pixel_decoder=dict(encoder=dict(num_layers=1)),
        transformer_decoder=dict(num_layers=3),
        train_cfg=dict(num_points=1024)))

dataset = dict(type='BaseSegDataset', data_root=data_root,
               metainfo=dict(classes=classes, palette=palette),
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=4e-4),
    paramwise_cfg=dict(_delete_=True, custom_keys={k: dict(decay_mult=0.0) for k in (
        *_base_.swinv2_no_decay_keys, 'query_embed', 'query_feat', 'level_embed')}))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=0, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1, save_best=None),
    visualization=dict(type='SegVisualizationHook', draw=False))
randomness = dict(seed=0)
