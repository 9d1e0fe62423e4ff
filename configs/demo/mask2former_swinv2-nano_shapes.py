# Demo: a small SwinV2 Mask2Former for instance segmentation on the synthetic shapes dataset
# (devkit/synthetic.py, COCO format) on a CPU. No pretrained weights.
# Changes from ./mask2former_swinv2-nano_shapes-panoptic.py, as mmdet's
# mask2former_r50_8xb2-lsj-50e_coco.py changes its panoptic base: no stuff classes, instance
# annotations (CocoDataset), instance predictions only.
_base_ = './mask2former_swinv2-nano_shapes-panoptic.py'
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(pad_seg=False),
    panoptic_head=dict(num_stuff_classes=0, loss_cls=dict(class_weight=[1.0] * 3 + [0.1])),
    panoptic_fusion_head=dict(num_stuff_classes=0),
    test_cfg=dict(panoptic_on=False))

metainfo = dict(_delete_=True, classes=('circle', 'square', 'triangle'))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(
    type='CocoDataset', metainfo=metainfo, ann_file='annotations/instances_train.json',
    data_prefix=dict(_delete_=True, img='train/'), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    type='CocoDataset', metainfo=metainfo, ann_file='annotations/instances_val.json',
    data_prefix=dict(_delete_=True, img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
