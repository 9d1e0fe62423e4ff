# Mask R-CNN + FPN, SwinV2-B, window 16, COCO, 1x schedule.
# Weights: https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use.
# Changes from ./mask-rcnn_swinv2-t-w16_fpn_1x_coco.py: arch base (128-1024 channels), drop path 0.3.
_base_ = './mask-rcnn_swinv2-t-w16_fpn_1x_coco.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
