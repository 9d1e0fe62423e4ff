# HTC + FPN, SwinV2-L, window 24, COCO, 20 epochs multi-scale, trained with FSDP (16 GPUs x 1
# image): tools/dist_train.sh CONFIG 8 on each of two nodes (or torchrun with --nnodes 2).
# Memory per GPU, backbone only, estimated by tools/estimate_memory.py (fake CUDA tensors, no
# GPU measured it): at 1536x1536, 1 image, 8 ranks, with_cp on: 3.2 GiB under FSDP against
# 6.2 GiB under DDP (11.1 / 14.2 GiB with with_cp off); the neck and heads come on top.
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use, as in the
#   DDP config.
# Changes from ./htc_swinv2-l-w24_fpn_ms-400-1400-16xb1-20e_coco.py: mmengine's FlexibleRunner
# with FSDP (../_base_/swinv2_fsdp.py: units for the backbone and each block, the backbone in
# bf16 with neck and heads float32, whole checkpoints); the training recipe is unchanged.
_base_ = ['./htc_swinv2-l-w24_fpn_ms-400-1400-16xb1-20e_coco.py', '../_base_/swinv2_fsdp.py']
