# Mask R-CNN + FPN, SwinV2-S, window 16, COCO, 3x multi-scale.
# Weights: https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use.
# Changes from ./mask-rcnn_swinv2-t-w16_fpn_ms-crop-3x_coco.py: arch small, drop path 0.3.
_base_ = './mask-rcnn_swinv2-t-w16_fpn_ms-crop-3x_coco.py'
model = dict(backbone=dict(
    arch='small', drop_path_rate=0.3,
    init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window16_256.pth')))
