"""Per-rank memory of training a SwinV2 backbone on CUDA under DDP or FSDP, estimated without a
GPU.

    peak ~ model states + activations autograd keeps

- Activations: one bf16-autocast training forward on fake CUDA tensors
  (:func:`.activations.cuda_saved_for_backward_mib`), plus what ``with_cp`` keeps: the input of
  each checkpointed block (the non-reentrant checkpoint holds it outside autograd's saved
  tensors, which the estimator counts).
- States, AdamW with float32 master weights, P parameters, N ranks:
  DDP: 16 B/param (weights, gradients, two moments) + 4 B/param (DDP's gradient buckets).
  FSDP (FULL_SHARD, bf16 parameters, float32 gradient reduction): 16 B/param / N, plus the
  unsharded units in flight: the root unit (stem, patch merging, norms) in bf16 throughout, and
  the largest block twice in bf16 (the current and the prefetched one) with its float32
  gradient before the reduce-scatter.

Left out: the backward's transient tensors, the allocator's fragmentation, the CUDA context
(about 0.5 GiB), the neck and heads.
"""
from __future__ import annotations

import torch
from torch import nn

from swinv2_backbone.model.backbone import SwinV2Backbone
from swinv2_backbone.model.blocks import SwinV2Block
from swinv2_backbone.ops import effective_window
from .activations import cuda_saved_for_backward_mib

__all__ = ['checkpointed_inputs_mib', 'training_memory_gib']

MIB = 2**20


def checkpointed_inputs_mib(model: SwinV2Backbone, size: tuple[int, int], batch: int) -> float:
    """MiB of the checkpointed blocks' inputs: the float32 residual stream entering each block
    of a stage with ``with_cp='block'``, (B, tokens of the map padded to whole windows, C)."""
    H, W = -(-size[0] // 4), -(-size[1] // 4)  # the 4x4 patch embedding
    total = 0
    for i, stage in enumerate(model.stages):
        if i > 0 and stage.downsample is not None:
            H, W = -(-H // 2), -(-W // 2)
        if stage.with_cp == 'block':  # the tokens of whole windows: padded
            window, _ = effective_window(H, W, stage.window_size, stage.window_size // 2)
            tokens = -(-H // window) * window * -(-W // window) * window
            dim = stage.blocks[0].norm1.normalized_shape[0]
            total += len(stage.blocks) * batch * tokens * dim * 4
    return total / MIB


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def training_memory_gib(kwargs: dict, size: tuple[int, int], batch: int, ranks: int,
                        strategy: str) -> dict[str, float]:
    """GiB per rank of training ``SwinV2Backbone(**kwargs)`` on (batch, 3, *size) images under
    bf16 autocast (DDP) or bf16 mixed precision (FSDP) with AdamW: ``states``,
    ``activations`` and their sum ``peak``, as the module docstring estimates them."""
    if strategy not in ('ddp', 'fsdp'):
        raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {strategy!r}")
    with torch.device('meta'):  # SwinV2-G's 3 billion parameters are never allocated
        model = SwinV2Backbone(**kwargs)
    params = _numel(model)
    if strategy == 'ddp':
        states = 20 * params
    else:
        blocks = [_numel(m) for m in model.modules() if isinstance(m, SwinV2Block)]
        largest, root = max(blocks), params - sum(blocks)
        states = 16 * params / ranks + 2 * root + 2 * 2 * largest + 4 * largest
    saved = cuda_saved_for_backward_mib(lambda: model, size, batch, torch.bfloat16)
    activations = (saved + checkpointed_inputs_mib(model, size, batch)) * MIB
    return dict(params=params, states=states / 2**30, activations=activations / 2**30,
                peak=(states + activations) / 2**30)
