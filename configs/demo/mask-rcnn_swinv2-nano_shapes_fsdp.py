# The Mask R-CNN demo (mask-rcnn_swinv2-nano_shapes.py) trained with FSDP through mmengine's
# FlexibleRunner, activation checkpointing on: tools/dist_train.sh CONFIG 2 (gloo on a CPU).
# No pretrained weights.
# Changes from ./mask-rcnn_swinv2-nano_shapes.py: FSDP (../_base_/swinv2_fsdp.py) and with_cp.
_base_ = ['./mask-rcnn_swinv2-nano_shapes.py', '../_base_/swinv2_fsdp.py']
model = dict(backbone=dict(with_cp=True))
