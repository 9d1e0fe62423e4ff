"""The fast paths by name: what :attr:`~swinv2_backbone.runtime.execution.Execution.block`
and :attr:`~swinv2_backbone.runtime.execution.Execution.attention_backend` pick.

- :data:`BLOCK_KERNELS`: each computes a whole
  :class:`~swinv2_backbone.model.blocks.SwinV2Block` from its
  :class:`~swinv2_backbone.kernels.interface.BlockWeights`:
  ``kernel(x, weights, window, mask, real, execution) -> x``;
- :data:`ATTENTION_BACKENDS`: the window attention each path runs, one interface:
  ``run(x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window, execution)`` ->
  the attention before the output projection (tokens last, any leading shape) and ``x`` as the
  residual is to add the branch's output to (``x``, or a view of it through which backward
  adds the residual's gradient in). tests/test_attention.py runs every entry against the
  official formula.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..runtime.execution import Execution
from . import cpu, device
from .reference import reference_attention, split_windows

__all__ = ['ATTENTION_BACKENDS', 'AttentionBackend', 'BLOCK_KERNELS']


def _reference(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
               temperature: torch.Tensor, pos_bias: torch.Tensor, mask: torch.Tensor | None,
               num_heads: int, window: int,
               execution: Execution) -> tuple[torch.Tensor, torch.Tensor]:
    windows, mask = split_windows(x, mask, window)
    return reference_attention(windows, weight, qkv_bias, temperature, pos_bias, mask,
                               num_heads, exporting=execution.exporting), x


@dataclass(frozen=True)
class AttentionBackend:
    """A window attention: ``run`` (the interface above), and whether it has a backward
    (``trains``; the others run only without autograd)."""

    run: Callable
    trains: bool


ATTENTION_BACKENDS: dict[str, AttentionBackend] = {
    # the official code's plain ops (what the modules run as written)
    'reference': AttentionBackend(_reference, trains=True),
    # the reference while a graph is recorded for another runtime: F.normalize's division
    'export': AttentionBackend(_reference, trains=False),
    # whole-stage SDPA; with the fused Triton q/k/v kernels
    'batched': AttentionBackend(device.attention, trains=True),
    'batched, fused': AttentionBackend(device.attention, trains=True),
    # chunked attention with a hand-written backward, or in place without autograd
    'cpu': AttentionBackend(cpu.attention, trains=True),
    'cpu inference': AttentionBackend(cpu.attention_inference, trains=False),
}

BLOCK_KERNELS: dict[str, Callable] = {
    'batched': device.block,
    'cpu': cpu.block_train,
    'cpu inference': cpu.block_inference,
}
