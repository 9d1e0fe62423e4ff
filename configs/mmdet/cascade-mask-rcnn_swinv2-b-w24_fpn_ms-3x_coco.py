# Cascade Mask R-CNN + FPN, SwinV2-B, window 24, COCO, 3x multi-scale.
# Weights: the ImageNet-22k window-12 release at 192 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window12_192_22k.pth
#   downloaded into torch.hub's cache on first use. At 192 px its last stage ran a
#   6x6 window, hence pretrained_window_sizes (12, 12, 12, 6); the CPB extrapolates to window 24.
# Changes from ./cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py: arch base, window 24, the
# 22k weights, drop path 0.3.
_base_ = './cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py'
model = dict(
    backbone=dict(arch='base', window_size=24, pretrained_window_sizes=(12, 12, 12, 6),
                  drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window12_192_22k.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
