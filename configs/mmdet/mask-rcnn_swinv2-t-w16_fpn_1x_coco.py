# Mask R-CNN + FPN, SwinV2-T, window 16, COCO, 1x schedule (12 epochs), AdamW.
# Weights: the official SwinV2-T window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window16_256.pth
#   saved as checkpoints/swinv2_tiny_patch4_window16_256.pth (loaded as is; no conversion needed).
#   At 256 px its last stage ran an 8x8 window, hence pretrained_window_sizes (16, 16, 16, 8).
# Changes from mmdet's swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py: the SwinV2 backbone and no
# weight decay on the SwinV2-specific parameters (CPB MLP, logit scale, q/v biases).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)

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
                      checkpoint='checkpoints/swinv2_tiny_patch4_window16_256.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

# no weight decay on norms, position-bias MLPs, temperatures, q/v biases, position embeddings;
# layer-wise lr decay is off (1.0); e.g. 0.9 scales the lr of the block d from the top by 0.9^d
optim_wrapper = dict(
    constructor='SwinV2LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=1.0,
        custom_keys={k: dict(decay_mult=0.0) for k in (
            'norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed')}))
