# The UperNet demo (upernet_swinv2-nano_shapes.py) trained with FSDP through mmengine's
# FlexibleRunner, activation checkpointing on: tools/dist_train.sh CONFIG 2 (gloo on a CPU).
# No pretrained weights.
# Changes from ./upernet_swinv2-nano_shapes.py: FSDP (../_base_/swinv2_fsdp.py) and with_cp.
_base_ = ['./upernet_swinv2-nano_shapes.py', '../_base_/swinv2_fsdp.py']
model = dict(backbone=dict(with_cp=True))
