# Mask2Former, SwinV2-L, window 24, ADE20K 640x640, 160k iterations, AdamW.
# Weights: the official SwinV2-L ImageNet-22k window-12 release at 192 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth
#   downloaded into torch.hub's cache on first use (loaded as is). At 192 px its
#   last stage ran a 6x6 window, hence pretrained_window_sizes (12, 12, 12, 6); the CPB
#   extrapolates to window 24 (the 20x20 last map at 640 px runs one 20x20 window).
# Changes from mmseg's mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py:
# the SwinV2-L backbone (loaded through init_cfg; model.pretrained stays None) and the SwinV2
# fine-tuning recipe: the backbone at 0.1x the lr and no weight decay on norms and query/level
# embeddings, as there, nor on CPB MLPs, logit scales and q/v biases.
_base_ = ['mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
          '../_base_/swinv2_recipe.py']
# the host base imports mmdet.models (its pixel decoder and losses); this package beside it
custom_imports = dict(imports=['mmdet.models', 'swinv2_backbone'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SwinV2Backbone',
        arch='large',
        window_size=24,
        pretrained_window_sizes=(12, 12, 12, 6),
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]))

optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_query_paramwise_cfg}})
