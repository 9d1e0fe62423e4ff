# UperNet (+ auxiliary FCN head), SwinV2-T, window 16, ADE20K 512x512, 160k iterations, AdamW.
# Weights: SwinV2-T, window 16, from the official ImageNet-1k release at 256 px with window 16
#   (../_base_/models/swinv2-t-w16.py), downloaded into torch.hub's cache on first use.
# Changes from mmseg's swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py:
# the SwinV2 backbone (loaded through init_cfg; model.pretrained stays None) and no weight decay
# on the SwinV2-specific parameters.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
          '../_base_/swinv2_finetune.py',
          '../_base_/models/swinv2-t-w16.py']

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.swinv2_t_w16.backbone, _delete_=True, drop_path_rate=0.3, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=_base_.swinv2_t_w16.channels, num_classes=150),
    auxiliary_head=dict(in_channels=_base_.swinv2_t_w16.channels[2], num_classes=150))


optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
