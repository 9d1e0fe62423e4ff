# SimMIM pretraining of SwinV2-B, window 12, 192 px, 800 epochs on ImageNet-1k (16 GPUs x 128), the
# official SimMIM SwinV2-B setting.
# No pretrained weights: this is the pretraining. At 192 px the last stage's map is 6x6, so its
# window shrinks to 6 (pretrained_window_sizes (12, 12, 12, 6) when fine-tuning from it).
# Your own images: set train_dataloader.dataset to dict(type='CustomDataset',
# data_root='data/mine', data_prefix='train', with_label=False, pipeline=...) (one folder).
# Changes from mmpretrain's simmim/simmim_swin-base-w6_16xb128-amp-coslr-800e_in1k-192px.py: the
# SwinV2 backbone with a mask token (as the official SimMIM SwinV2), window 12, the official
# SimMIM SwinV2 learning rate (1e-4 per 512 images) and no weight decay on SwinV2's CPB MLP,
# logit scales and the mask token: the SwinV2-T config beside this one, with SwinV2-B, 128
# images per GPU and 800 epochs.
_base_ = ['./simmim_swinv2-t-w12_8xb256-amp-coslr-100e_in1k-192px.py',
          '../_base_/models/swinv2-b-w12.py']

train_dataloader = dict(batch_size=128)
model = dict(backbone=dict(_base_.swinv2_b_w12.backbone),
             neck=dict(in_channels=_base_.swinv2_b_w12.channels[3]))
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-7 / 1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=790, eta_min=5e-6 * 2048 / 512, by_epoch=True,
         begin=10, end=800, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=800)
