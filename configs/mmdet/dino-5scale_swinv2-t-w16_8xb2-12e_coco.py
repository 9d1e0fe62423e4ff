# DINO (5 feature scales) + SwinV2-T, window 16, COCO, 12 epochs, AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmdet's dino/dino-5scale_swin-l_8xb2-12e_coco.py: the SwinV2-T backbone (all
# four stages into the channel mapper, as there) and the SwinV2 fine-tuning recipe: the
# backbone at 0.1x the lr as there, and no weight decay on norms, CPB MLPs, logit scales and
# q/v biases. Under fp16 AMP (tools/train.py --amp) the backbone normalises q and k in float32
# and passes no gradient through zero padding (other SwinV2 ports give NaN there under DINO).
_base_ = ['mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16.py']

model = dict(
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.2, out_indices=(0, 1, 2, 3),
        with_cp=False),
    neck=dict(in_channels=_base_.swinv2_t_w16.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
