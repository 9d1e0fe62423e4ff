# Mask R-CNN + FPN, SwinV2-T, window 16, COCO, 1x schedule (12 epochs), AdamW.
# Weights: the official SwinV2-T window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is; no conversion needed).
#   At 256 px its last stage ran an 8x8 window, hence pretrained_window_sizes (16, 16, 16, 8).
# Changes from mmdet's swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py: the SwinV2 backbone and no
# weight decay on the SwinV2-specific parameters (CPB MLP, logit scale, q/v biases).
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/swinv2_finetune.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))


optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
