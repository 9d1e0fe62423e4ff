# DINO (5 feature scales) + SwinV2-L, window 24, COCO, 36 epochs multi-scale, AdamW: the recipe
# of mmdet's Swin-L DINO (dino-5scale_swin-l_8xb2-36e_coco.py).
# Weights: the official SwinV2-L ImageNet-22k window-12 release at 192 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth
#   downloaded into torch.hub's cache on first use (loaded as is). At 192 px its
#   last stage ran a 6x6 window, hence pretrained_window_sizes (12, 12, 12, 6); the CPB
#   extrapolates to window 24.
# Changes from ./dino-5scale_swinv2-t-w16_8xb2-12e_coco.py: arch large, window 24, the 22k
# weights, with_cp on (as mmdet's Swin-L DINO), and the 36-epoch schedule of
# dino-5scale_swin-l_8xb2-36e_coco.py (steps at epochs 27 and 33).
_base_ = './dino-5scale_swinv2-t-w16_8xb2-12e_coco.py'

model = dict(
    backbone=dict(arch='large', window_size=24, pretrained_window_sizes=(12, 12, 12, 6),
                  with_cp=True,
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_large_patch4_window12_192_22k.pth')),
    neck=dict(in_channels=[192, 384, 768, 1536]))

max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
