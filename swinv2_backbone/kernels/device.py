"""The batched path: whole-stage ops for GPUs, no Python loop over images or chunks.

Per block: one qkv GEMM, one q/k normalisation (:func:`~swinv2_backbone.ops.unit_vectors`) and
one ``F.scaled_dot_product_attention`` call. The logit bias SDPA adds is laid out so that
nothing is materialised per image and PyTorch's fused (memory-efficient / cuDNN) kernels stay
eligible:

- plain windows: queries (B*nW, heads, N, d), bias ``pos_bias`` (1, heads, N, N), broadcast;
- shifted windows: windows and heads together as SDPA's heads, queries (B, nW*heads, N, d), bias
  ``pos_bias + shift mask`` (1, nW*heads, N, N), one per stage shape, broadcast over images.

Backward is autograd's (SDPA's fused backward), except for :class:`UnitQK`, which saves only its
outputs (the tensors SDPA saves anyway) instead of the float32 vectors autograd would keep, and
:class:`AmpLayerNorm`, the blocks' norms in training under autocast, which keeps its input in
the autocast dtype instead of autocast's float32 copy.
Under fp16/bf16 autocast the q/k normalisation runs in float32 and a vector whose norm is
clamped (the zero padding's k) gets no gradient, so nothing overflows; no host
synchronisation, and it traces under ``torch.compile``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import inverse_norm, scaled_unit_qk, unclamped, unit_vector_grad
from .fused import qkv_heads

if TYPE_CHECKING:  # the execution module calls the kernels
    from ..runtime.execution import Execution

__all__ = ['AmpLayerNorm', 'UnitQK', 'layer_norm', 'window_attention']


class UnitQK(torch.autograd.Function):
    """``(unit q * temperature, unit k)`` from the raw (2, ..., d) q/k projections, computed in
    float32 (:func:`~swinv2_backbone.ops.inverse_norm`) and returned in their dtype.

    Saves its outputs and the unmasked inverse norms: backward recovers the unit vectors from
    the outputs and the mask from the inverse norms (:func:`~swinv2_backbone.ops.unclamped`),
    so nothing is kept besides what the attention saves anyway (autograd would keep the
    projections and a float32 copy of q), and each direction runs few ops (on a GPU each op is
    a launch): six forward, twelve backward (there were eight and thirteen).
    """

    @staticmethod
    def forward(ctx, qk: torch.Tensor, temperature: torch.Tensor):
        inv = inverse_norm(qk, masked=False)  # (2, ..., 1) float32
        # float32 products rounded once to qk's dtype, in one kernel (no float32 copy); into a
        # contiguous tensor, which torch.compile requires of out=; a clamped (zero) vector
        # maps to zero here, and gets no gradient in backward
        out = torch.mul(qk, torch.cat((inv[:1] * temperature, inv[1:])),
                        out=qk.new_empty(qk.shape))
        ctx.save_for_backward(out, inv, temperature)
        return out[0], out[1]

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor):
        out, inv, temperature = ctx.saved_tensors
        dtype = inv.dtype  # float32 at least
        scaled = out.to(dtype)  # (unit q * temperature, unit k)
        grad = torch.stack((dq, dk)).to(dtype)
        # (scaled . grad) is (unit . d(loss)/d(unit)) for q and for k
        dot = (scaled * grad).sum(-1, keepdim=True)
        dtemperature = dot[0].sum((0, 1, 3, 4)).view(temperature.shape) / temperature \
            if ctx.needs_input_grad[1] else None
        # in place on the views (``grad[0] *= t`` would copy the result back onto itself)
        grad[0].mul_(temperature)  # d(loss)/d(unit q)
        dot[0].div_(temperature)  # as unit_vector_grad takes it with the scaled q
        dqk = unit_vector_grad(scaled, grad, unclamped(inv), dot)
        return dqk.to(out.dtype), dtemperature


def window_attention(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                     temperature: torch.Tensor, pos_bias: torch.Tensor,
                     mask: torch.Tensor | None, num_heads: int,
                     fused: bool = False, grad: bool = True) -> torch.Tensor:
    """qkv projection and scaled cosine attention of every window of a stage at once.

    Args:
        x: (B, L, C) tokens in window order, L = num_windows * N.
        weight, qkv_bias: the qkv projection, (3C, C) and (3C,) or None.
        temperature: (heads, 1, 1) ``exp(clamped logit_scale)``.
        pos_bias: (heads, N, N) position bias.
        mask: (num_windows, N, N) shift mask, or None.
        fused: q, k and v from :func:`~swinv2_backbone.kernels.fused.qkv_heads`, one Triton
            kernel (and one in backward).
        grad: autograd records this forward: q and k through :class:`UnitQK`; else by the
            unmasked inverse norms (``inverse_norm(masked=False)``), four ops fewer.

    Returns:
        (B, L, C), before the output projection.
    """
    B, L, C = x.shape
    N = pos_bias.shape[-1]
    nW, h = L // N, num_heads
    qkv = F.linear(x, weight, qkv_bias)
    if fused:  # each (B*nW, heads, N, d)
        q, k, v = qkv_heads(qkv, temperature, h, N, grad)
    else:
        # (B, nW, N, 3, heads, d) -> (3, B, nW, heads, N, d)
        qkv = qkv.view(B, nW, N, 3, h, -1).permute(3, 0, 1, 4, 2, 5)
        qk, v = qkv.split((2, 1))  # a split's backward is one cat, not a zero-filled tensor each
        if grad:
            q, k = UnitQK.apply(qk, temperature)
        else:
            q, k = scaled_unit_qk(qk, temperature, qk.new_empty(qk.shape), masked=False)
        # in training a copy: a view would keep the whole qkv projection alive for SDPA's
        # backward; in inference the view (SDPA's fused kernels take strides; shifted
        # windows' reshape below copies it anyway)
        v = v.squeeze(0).contiguous() if grad else v.squeeze(0)
    d = v.shape[-1]
    if mask is None:  # windows as SDPA's batch: (B*nW, heads, N, d), bias (1, heads, N, N)
        bias = pos_bias.to(v.dtype).unsqueeze(0)
        q, k, v = (t.reshape(B * nW, h, N, d) for t in (q, k, v))
    else:  # windows x heads as SDPA's heads: (B, nW*heads, N, d), bias (1, nW*heads, N, N)
        bias = (pos_bias + mask.unsqueeze(1)).to(v.dtype).view(1, nW * h, N, N)
        q, k, v = (t.reshape(B, nW * h, N, d) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    # (B, nW, heads, N, d) -> (B, nW, N, heads, d) -> (B, L, C)
    return out.view(B, nW, h, N, d).transpose(2, 3).reshape(B, L, C)


class AmpLayerNorm(torch.autograd.Function):
    """``F.layer_norm`` in float32 as autocast runs it on GPUs, keeping for backward its input
    as given (fp16/bf16) rather than the float32 copy: the same results, and half the bytes
    (backward makes the copy again).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> torch.Tensor:
        out, mean, rstd = torch.native_layer_norm(x.float(), weight.shape, weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        dx, dweight, dbias = torch.ops.aten.native_layer_norm_backward(
            grad, x.float(), weight.shape, mean, rstd, weight, bias,
            list(ctx.needs_input_grad[:3]))
        return dx, dweight, dbias, None


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm, execution: Execution) -> torch.Tensor:
    """``norm(x)``; in training under autocast on the batched path through
    :class:`AmpLayerNorm` (elsewhere autocast's own rule holds: float32 on GPUs, the input's
    dtype on CPUs)."""
    if execution.path == 'batched' and execution.grad and execution.amp is not None \
            and x.dtype == execution.amp and norm.weight is not None:
        return AmpLayerNorm.apply(x, norm.weight, norm.bias, norm.eps)
    return norm(x)
