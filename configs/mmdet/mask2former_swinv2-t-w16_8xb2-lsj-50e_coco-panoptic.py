# Mask2Former + SwinV2-T, window 16, COCO panoptic segmentation, 50 epochs with large-scale jitter
# (1024x1024 crops), AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py: the
# SwinV2-T backbone and the SwinV2 fine-tuning recipe: the backbone at 0.1x the lr and no weight
# decay on norms and query/level embeddings, as there, nor on CPB MLPs, logit scales and q/v
# biases.
_base_ = ['mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16.py']

model = dict(
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        with_cp=False),
    panoptic_head=dict(in_channels=_base_.swinv2_t_w16.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
