# UperNet (+ auxiliary FCN head), SwinV2-T, window 16, ADE20K 512x512, 160k iterations, AdamW.
# Weights: https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is).
#   At 256 px its last stage ran an 8x8 window, hence pretrained_window_sizes (16, 16, 16, 8).
# Changes from mmseg's swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py:
# the SwinV2 backbone (loaded through init_cfg; model.pretrained stays None) and no weight decay
# on the SwinV2-specific parameters.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', '../_base_/swinv2_finetune.py']

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SwinV2Backbone',
        arch='tiny',
        window_size=16,
        pretrained_window_sizes=(16, 16, 16, 8),
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))


optim_wrapper = dict(
    constructor={{_base_.swinv2_optim_constructor}},
    paramwise_cfg={{_base_.swinv2_paramwise_cfg}})
