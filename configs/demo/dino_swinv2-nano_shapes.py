# Demo: a small SwinV2 DINO trained from scratch on the synthetic shapes dataset
# (devkit/synthetic.py, COCO format) on a CPU. No pretrained weights.
# Changes from mmdet's dino-4scale_r50_8xb2-12e_coco.py: SwinV2 backbone (embed_dim 32,
# window 4 for 128 px images, stages 2-4 into the channel mapper as the Swin DINO configs do),
# 256-dim transformer (512-wide FFNs) with 2 encoder and 3 decoder layers, 100 queries and 30 denoising
# queries, 3 classes, light pipeline, iteration-based AdamW without the backbone's 0.1 lr
# (it starts from scratch).
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
          '../_base_/models/swinv2-nano-w4.py',
          '../_base_/swinv2_recipe.py']
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

data_root = 'demo_out/data/coco/'
classes = ('circle', 'square', 'triangle')
max_iters = 500
image_size = (128, 128)
dims = 256  # mmdet's DINO decoder assumes 256 (its reference-point encoding)

model = dict(
    num_queries=100,
    backbone=dict(
        _base_.swinv2_nano_w4.backbone, _delete_=True, drop_path_rate=0.0, out_indices=(1, 2, 3)),
    neck=dict(in_channels=_base_.swinv2_nano_w4.channels[1:], out_channels=dims),
    encoder=dict(num_layers=2, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=dims, num_heads=8),
        ffn_cfg=dict(embed_dims=dims, feedforward_channels=512))),
    decoder=dict(num_layers=3, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=dims, num_heads=8),
        cross_attn_cfg=dict(embed_dims=dims, num_heads=8),
        ffn_cfg=dict(embed_dims=dims, feedforward_channels=512))),
    positional_encoding=dict(num_feats=dims // 2),
    bbox_head=dict(num_classes=3, embed_dims=dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=30)),
    test_cfg=dict(max_per_img=50))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=4e-4, weight_decay=1e-4),
    paramwise_cfg=dict(_delete_=True, custom_keys={
        k: dict(decay_mult=0.0) for k in _base_.swinv2_no_decay_keys}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False)

# fixed seed: the demo gives the same numbers run after run
randomness = dict(seed=0)
