# Mask2Former + SwinV2-T, window 16, COCO panoptic segmentation, 50 epochs with large-scale jitter
# (1024x1024 crops), AdamW.
# Weights: the official SwinV2-T window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is).
#   At 256 px its last stage ran an 8x8 window, hence pretrained_window_sizes (16, 16, 16, 8).
# Changes from mmdet's mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py: the
# SwinV2-T backbone and the SwinV2 fine-tuning recipe: the backbone at 0.1x the lr and no weight
# decay on norms and query/level embeddings, as there, nor on CPB MLPs, logit scales and q/v
# biases.
_base_ = ['mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py',
          '../_base_/swinv2_finetune.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth')),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
