# Demo: the small SwinV2 Mask R-CNN of mask-rcnn_swinv2-nano_shapes.py for large images full of
# small shapes (devkit/synthetic.py: make_large_shapes_set), trained on 256x256 crops of the same
# kind (make_shapes_dataset with radius=(10, 24), grid=64) and run on large images by
# tools/infer_large.py, whole or in 512x512 tiles. No pretrained weights.
# Changes from that demo: 256x256 training images with up to 16 shapes of 20-48 px, anchors
# of 16 px on the stride-4 level, caps on proposals and detections for a 512x512 tile.
_base_ = ['./mask-rcnn_swinv2-nano_shapes.py']

max_iters = 800
image_size = (256, 256)
tile_size = (512, 512)

model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[4])),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000),
                  rcnn=dict(score_thr=0.05, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# a tile at its own scale: Resize to the tile size keeps tile-sized images as they are
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=tile_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
