"""What a block's fast path receives: the block's weights as plain tensors and values.

A fast path (:data:`~swinv2_backbone.kernels.backends.BLOCK_KERNELS`) computes a whole
:class:`~swinv2_backbone.model.blocks.SwinV2Block` from a :class:`BlockWeights`, which the
block builds from its own modules; kernels never read a module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ['BlockWeights', 'Norm']


class Norm(NamedTuple):
    """An affine LayerNorm over the last dim: ``Norm(weight, bias, eps)(x)``."""

    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class BlockWeights:
    """A res-post-norm block's weights, for one window size.

    Attributes:
        num_heads: attention heads.
        qkv_weight, qkv_bias: (3C, C) and (3C,) (a zero k bias) or None.
        temperature: (heads, 1, 1) the clamped ``exp(logit_scale)``.
        pos_bias: (heads, N, N) the position bias (``CPB_SCALE * sigmoid(cpb)``).
        proj_weight, proj_bias: the output projection, (C, C) and (C,).
        norm1, norm2: the post-norms of the attention and MLP branches.
        fc1_weight, fc1_bias, fc2_weight, fc2_bias: the MLP, (4C, C), (4C,), (C, 4C), (C,).
        norm3: SwinV2-G's norm of the main branch after every 6th block, or None.
        drop_path: the stochastic depth rate in this forward (0 in eval).
        recompute_mlp: backward recomputes the MLP's hidden layer (``with_cp='mlp'``).
    """

    num_heads: int
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    temperature: torch.Tensor
    pos_bias: torch.Tensor
    proj_weight: torch.Tensor
    proj_bias: torch.Tensor
    norm1: Norm
    fc1_weight: torch.Tensor
    fc1_bias: torch.Tensor
    fc2_weight: torch.Tensor
    fc2_bias: torch.Tensor
    norm2: Norm
    norm3: Norm | None
    drop_path: float
    recompute_mlp: bool
