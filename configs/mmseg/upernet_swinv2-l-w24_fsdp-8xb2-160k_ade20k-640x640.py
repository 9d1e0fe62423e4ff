# UperNet, SwinV2-L, window 24, ADE20K 640x640, 160k iterations, trained with FSDP (8 GPUs x 2
# images): tools/dist_train.sh CONFIG 8.
# Memory per GPU, backbone only, estimated by tools/estimate_memory.py (fake CUDA tensors, no
# GPU measured it): 640x640, 2 images, 8 ranks: 1.6 GiB under FSDP with with_cp on, 5.1 GiB
# with it off, against 4.7 / 8.2 GiB under DDP; the heads come on top.
# Weights: SwinV2-L, window 24, from the official ImageNet-22k release at 192 px with window 12
#   (../_base_/models/swinv2-l-w24.py), downloaded into torch.hub's cache on first use, as in the
#   DDP config.
# Changes from ./upernet_swinv2-l-w24_8xb2-160k_ade20k-640x640.py: mmengine's FlexibleRunner
# with FSDP (../_base_/swinv2_fsdp.py: units for the backbone and each block, the backbone in
# bf16 with neck and heads float32, whole checkpoints) and with_cp on; the training recipe is unchanged.
_base_ = ['./upernet_swinv2-l-w24_8xb2-160k_ade20k-640x640.py', '../_base_/swinv2_fsdp.py']
model = dict(backbone=dict(with_cp=True))
