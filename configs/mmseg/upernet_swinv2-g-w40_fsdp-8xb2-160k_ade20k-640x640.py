# UperNet, SwinV2-G (3.0 billion parameters), window 40, ADE20K 640x640 (the paper's
# segmentation window and crop), 160k iterations, trained with FSDP (8 GPUs x 2 images).
# Memory per GPU, backbone only, estimated by tools/estimate_memory.py (fake CUDA tensors, no
# GPU measured it): 640x640, 2 images, 8 ranks, with_cp on: 10.6 GiB under FSDP; DDP would need
# 59.3 GiB (110.1 without with_cp; FSDP without it 61.4): FSDP with with_cp fits 40 GB GPUs.
# No pretrained weights: SwinV2-G's were never released. init_cfg is None; load your own
# SwinV2-G weights (converted by tools/convert_checkpoint.py) with init_cfg=dict(
# type='Pretrained', checkpoint=PATH).
# Changes from ./upernet_swinv2-l-w24_fsdp-8xb2-160k_ade20k-640x640.py: arch giant (a norm every
# 6 blocks), window 40 (the 20x20 last map runs one 20x20 window), the heads' inputs. What
# differs from the paper: no SimMIM pre-training on its 70M-image set, no multi-scale testing.
_base_ = ['./upernet_swinv2-l-w24_fsdp-8xb2-160k_ade20k-640x640.py',
          '../_base_/models/swinv2-g-w40.py']
model = dict(
    backbone=dict(_base_.swinv2_g_w40.backbone),
    decode_head=dict(in_channels=_base_.swinv2_g_w40.channels),
    auxiliary_head=dict(in_channels=_base_.swinv2_g_w40.channels[2]))
