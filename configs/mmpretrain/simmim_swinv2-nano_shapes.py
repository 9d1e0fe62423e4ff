# SimMIM pretraining of a small SwinV2 (embed_dim 32, window 4) on the images of the synthetic
# shapes dataset (devkit/synthetic.py), on a CPU. No pretrained weights: this is the
# pretraining; the checkpoint it saves loads into the demo detectors through init_cfg.
# Changes from mmpretrain's simmim/simmim_swin-base-w6_8xb256-amp-coslr-100e_in1k-192px.py: the
# SwinV2 backbone with a mask token, 128 px images from a folder (CustomDataset), 16 px mask
# patches, plain AdamW (no AMP on a CPU) with SwinV2's no-decay keys, 200 iterations.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs256_simmim_192.py',
          'mmpretrain::_base_/default_runtime.py',
          '../_base_/models/swinv2-nano-w4.py']
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

image_size = 128
max_iters = 200
model = dict(
    type='SimMIM',
    backbone=dict(
        _base_.swinv2_nano_w4.backbone, out_indices=(3,), mask_token=True, drop_path_rate=0.0),
    neck=dict(type='SimMIMLinearDecoder', in_channels=_base_.swinv2_nano_w4.channels[3],
              encoder_stride=32),
    head=dict(type='SimMIMHead', patch_size=4,
              loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.67, 1.0)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='SimMIMMaskGenerator', input_size=image_size, mask_patch_size=16,
         model_patch_size=4, mask_ratio=0.6),
    dict(type='PackInputs'),
]
# mmengine's Runner passes the collate_fn dict's keys to the function, and inheriting
# 'mmpretrain::' marks it with a _scope_ key default_collate does not take: restated
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=False,
    collate_fn=dict(_delete_=True, type='default_collate'),
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, type='CustomDataset', data_root='demo_out/data/coco',
                 data_prefix='train', with_label=False, pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in (
        'norm', 'bias', 'cpb_mlp', 'logit_scale', 'mask_token', 'absolute_pos_embed')}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', T_max=max_iters - 20, eta_min=1e-5, by_epoch=False,
         begin=20, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
