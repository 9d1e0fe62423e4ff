# Demo: a small SwinV2 Mask2Former for panoptic segmentation on the synthetic shapes dataset in
# COCO panoptic format (devkit/synthetic.py: panoptic PNGs + JSON) on a CPU.
# No pretrained weights. The three shapes are things, the rest is one stuff class.
# Changes from mmdet's mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py: SwinV2
# backbone (embed_dim 32, window 4), 1 pixel-decoder and 3 transformer-decoder layers, 20 queries,
# 3 thing + 1 stuff classes, 128 px images without large-scale jitter, iteration-based AdamW.
# Panoptic PNGs are read with mmdet's LoadPanopticAnnotations through devkit.panoptic (mmdet
# reads them with panopticapi, which is not on PyPI); for the same reason the held-out split is
# scored with CocoMetric on the things (PQ, CocoPanopticMetric, needs panopticapi).
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
          '../_base_/models/swinv2-nano-w4.py',
          '../_base_/swinv2_recipe.py']
custom_imports = dict(imports=['swinv2_backbone', 'devkit.panoptic'],
                      allow_failed_imports=False)

data_root = 'demo_out/data/coco/'
things, stuff = ('circle', 'square', 'triangle'), ('background',)
max_iters = 400
image_size = (128, 128)

model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(
        _base_.swinv2_nano_w4.backbone, _delete_=True, drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3)),
    panoptic_head=dict(
        in_channels=_base_.swinv2_nano_w4.channels, num_queries=20,
        num_things_classes=len(things), num_stuff_classes=len(stuff),
        loss_cls=dict(class_weight=[1.0] * (len(things) + len(stuff)) + [0.1]),
        pixel_decoder=dict(encoder=dict(num_layers=1)),
        transformer_decoder=dict(num_layers=3)),
    panoptic_fusion_head=dict(num_things_classes=len(things), num_stuff_classes=len(stuff)),
    train_cfg=dict(num_points=1024),
    test_cfg=dict(max_per_image=20))

metainfo = dict(classes=things + stuff, thing_classes=things, stuff_classes=stuff)
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadPanopticAnnotationsNoApi', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotationsNoApi', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/panoptic_train.json',
                 data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/panoptic_val.json',
                 data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='CocoMetric',
                     ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=4e-4),
    paramwise_cfg=dict(_delete_=True, custom_keys={k: dict(decay_mult=0.0) for k in (
        *_base_.swinv2_no_decay_keys, 'query_embed', 'query_feat', 'level_embed')}))
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=False, begin=0,
                       end=max_iters, eta_min=1e-5)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False)
randomness = dict(seed=0)
