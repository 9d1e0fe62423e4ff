# Demo: a small SwinV2 HTC (with its semantic branch) on the synthetic shapes dataset (COCO
# format, with COCO-stuff style label maps for the semantic branch; devkit/synthetic.py)
# on a CPU. No pretrained weights.
# Changes from mmdet's htc/htc_r50_fpn_1x_coco.py: SwinV2 backbone (embed_dim 32, window 4,
# with_cp on as in the SwinV2 HTC configs), 64-channel FPN and heads, 3 classes (4 in the
# semantic branch: the shapes and background), fewer proposals, light pipeline,
# iteration-based AdamW.
_base_ = ['mmdet::htc/htc_r50_fpn_1x_coco.py',
          '../_base_/models/swinv2-nano-w4.py',
          '../_base_/swinv2_recipe.py']
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

data_root = 'demo_out/data/coco/'
classes = ('circle', 'square', 'triangle')
max_iters = 400
image_size = (128, 128)
ch = 64  # FPN and head channels

model = dict(
    backbone=dict(
        _base_.swinv2_nano_w4.backbone, _delete_=True, drop_path_rate=0.0, out_indices=(0, 1, 2, 3),
        with_cp=True),
    neck=dict(in_channels=_base_.swinv2_nano_w4.channels, out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        mask_roi_extractor=dict(out_channels=ch),
        semantic_roi_extractor=dict(out_channels=ch),
        # the base's three stages with 3 classes (a list in a config replaces the base's whole)
        bbox_head=[dict(type='Shared2FCBBoxHead', in_channels=ch, fc_out_channels=256,
                        roi_feat_size=7, num_classes=3,
                        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                                        target_stds=stds),
                        reg_class_agnostic=True,
                        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                      loss_weight=1.0),
                        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
                   for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                                [0.033, 0.033, 0.067, 0.067])],
        mask_head=[dict(type='HTCMaskHead', with_conv_res=stage > 0, num_convs=4,
                        in_channels=ch, conv_out_channels=ch, num_classes=3,
                        loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))
                   for stage in range(3)],
        semantic_head=dict(in_channels=ch, conv_out_channels=ch, num_classes=4)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=300)),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/', seg='stuffthingmaps/train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in _base_.swinv2_no_decay_keys}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
