# SimMIM pretraining of SwinV2-T, window 12, 192 px, 100 epochs on ImageNet-1k (8 GPUs x 256).
# No pretrained weights: this is the pretraining. At 192 px the last stage's map is 6x6, so its
# window shrinks to 6 (pretrained_window_sizes (12, 12, 12, 6) when fine-tuning from it).
# Your own images: set train_dataloader.dataset to dict(type='CustomDataset',
# data_root='data/mine', data_prefix='train', with_label=False, pipeline=...) (one folder).
# Changes from mmpretrain's simmim/simmim_swin-base-w6_8xb256-amp-coslr-100e_in1k-192px.py: the
# SwinV2 backbone with a mask token (as the official SimMIM SwinV2), window 12, the official
# SimMIM SwinV2 learning rate (1e-4 per 512 images) and no weight decay on SwinV2's CPB MLP,
# logit scales and the mask token.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs256_simmim_192.py',
          'mmpretrain::_base_/default_runtime.py',
          '../_base_/models/swinv2-t-w12.py']
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

# mmengine's Runner passes the collate_fn dict's keys to the function, and inheriting
# 'mmpretrain::' marks it with a _scope_ key default_collate does not take: restated
train_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'))
model = dict(
    type='SimMIM',
    backbone=dict(
        _base_.swinv2_t_w12.backbone, out_indices=(3,), mask_token=True, drop_path_rate=0.1),
    neck=dict(type='SimMIMLinearDecoder', in_channels=_base_.swinv2_t_w12.channels[3],
              encoder_stride=32),
    head=dict(type='SimMIMHead', patch_size=4,
              loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4 * 2048 / 512, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in (
        'norm', 'bias', 'cpb_mlp', 'logit_scale', 'mask_token', 'absolute_pos_embed')}))
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-7 / 1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=5e-6 * 2048 / 512, by_epoch=True,
         begin=10, end=100, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=2048)
