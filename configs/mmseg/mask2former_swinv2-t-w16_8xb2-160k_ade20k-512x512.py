# Mask2Former, SwinV2-T, window 16, ADE20K 512x512, 160k iterations, AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmseg's mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py: the SwinV2-T
# backbone (loaded through init_cfg; model.pretrained stays None) and the SwinV2 fine-tuning
# recipe: the backbone at 0.1x the lr and no weight decay on norms and query/level embeddings,
# as there, nor on CPB MLPs, logit scales and q/v biases.
_base_ = ['mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py',
          '../_base_/swinv2_recipe.py',
          '../_base_/models/swinv2-t-w16.py']
# the host base imports mmdet.models (its pixel decoder and losses); this package beside it
custom_imports = dict(imports=['mmdet.models', 'swinv2_backbone'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        with_cp=False),
    decode_head=dict(in_channels=_base_.swinv2_t_w16.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
