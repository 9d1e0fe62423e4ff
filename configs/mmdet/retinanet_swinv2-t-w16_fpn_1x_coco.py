# RetinaNet + FPN (from stride 8), SwinV2-T, window 16, COCO, 1x schedule, AdamW.
# Weights: the window-8 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth
#   downloaded into torch.hub's cache on first use; its CPB, pretrained at window 8,
#   extrapolates to window 16.
# Changes from mmdet's swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py: the SwinV2 backbone, AdamW
# (lr 1e-4, weight decay 0.05, none on SwinV2-specific parameters) instead of SGD.
_base_ = ['mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/swinv2_finetune.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(8, 8, 8, 8),
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth')),
    neck=dict(in_channels=[192, 384, 768]))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
