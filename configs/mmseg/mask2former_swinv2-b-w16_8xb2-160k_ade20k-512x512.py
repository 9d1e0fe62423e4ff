# Mask2Former, SwinV2-B, window 16, ADE20K 512x512, 160k iterations, AdamW.
# Weights: the official SwinV2-B window-16 ImageNet-1k release at 256 px,
#   https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth
#   downloaded into torch.hub's cache on first use (loaded as is).
# Changes from ./mask2former_swinv2-t-w16_8xb2-160k_ade20k-512x512.py: arch base and its weights.
_base_ = './mask2former_swinv2-t-w16_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='base',
                  init_cfg=dict(checkpoint='https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_base_patch4_window16_256.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
