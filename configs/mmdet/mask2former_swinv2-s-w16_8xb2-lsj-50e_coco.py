# Mask2Former + SwinV2-S, window 16, COCO instance segmentation, 50 epochs with large-scale jitter, AdamW.
# Weights: the official SwinV2-S window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is).
# Changes from ./mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py: arch small and its weights.
_base_ = './mask2former_swinv2-t-w16_8xb2-lsj-50e_coco.py'

model = dict(
    backbone=dict(arch='small',
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_small_patch4_window16_256.pth')))
