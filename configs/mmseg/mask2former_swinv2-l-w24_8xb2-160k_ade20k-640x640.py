# Mask2Former, SwinV2-L, window 24, ADE20K 640x640, 160k iterations, AdamW.
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use.
#   The 20x20 last map at 640 px runs one 20x20 window, as the official code does.
# Changes from mmseg's mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py:
# the SwinV2-L backbone (loaded through init_cfg; model.pretrained stays None) and the SwinV2
# fine-tuning recipe: the backbone at 0.1x the lr and no weight decay on norms and query/level
# embeddings, as there, nor on CPB MLPs, logit scales and q/v biases.
_base_ = ['mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
          '../_base_/swinv2_recipe.py',
          '../_base_/models/swinv2-l-w24.py']
# the host base imports mmdet.models (its pixel decoder and losses); this package beside it
custom_imports = dict(imports=['mmdet.models', 'swinv2_backbone'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.swinv2_l_w24.backbone, _delete_=True, drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        with_cp=False),
    decode_head=dict(in_channels=_base_.swinv2_l_w24.channels))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
