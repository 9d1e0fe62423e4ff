"""Fused Triton kernels for the batched path's inference on GPUs.

On a GPU replaying the forward from a CUDA graph, fp16 inference is bound by the GPU's memory
traffic, and the largest kernels after the GEMMs and the attention were the ones these two
replace (session 6's H100 profile, BENCHMARKS.md):

- :func:`qkv_heads`: the qkv projection's (B, L, 3C) output to SDPA's q, k and v, each
  (B*nW, heads, N, d), with q and k normalised and q scaled by the temperature
  (:func:`~swinv2_backbone.ops.inverse_norm`'s rule: a vector at or below ``NORM_EPS`` maps
  to zero). One read and one write, instead of a float32 norm reduction over d = 32 per q and
  k, a scaling kernel and a copy of v.
- :func:`add_layer_norm_`: a block's residual ``x += LayerNorm(y)`` in place, in float32 as
  autocast runs layer norms on GPUs, in one pass, instead of autocast's float32 copy of ``y``,
  the norm and the addition.

Both compute in float32 and round once to the output's dtype. They run without autograd only
(:attr:`~swinv2_backbone.runtime.execution.Execution.fused`). Triton >= 3.0 (the one PyTorch >= 2.4
installs with its CUDA builds); with ``TRITON_INTERPRET=1`` set before the first import,
Triton's interpreter runs them on CPU tensors, which is how the tests check them against the
unfused path on machines without a GPU.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..ops import NORM_EPS

from ..hardware import TRITON

if TRITON:
    import triton
    import triton.language as tl

__all__ = ['add_layer_norm_', 'qkv_heads']


# elements a program holds per tensor: a few rows of a layer norm, tokens x head dims of q/k/v
_BLOCK_ELEMENTS = 4096

if TRITON:
    @triton.jit
    def _qkv_heads_kernel(qkv, temperature, out, tokens, plane, N, C, heads,
                          D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                          EPS: tl.constexpr):
        # program (token block, head); qkv: (tokens, 3C), token t = window * N + n;
        # out: (3, tokens / N, heads, N, D)
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
        head = tl.program_id(1)
        j = tl.arange(0, BLOCK_D)
        keep = (t < tokens)[:, None] & (j < D)[None, :]
        src = qkv + t[:, None] * (3 * C) + head * D + j[None, :]
        dst = out + (((t // N) * heads + head) * N + t % N)[:, None] * D + j[None, :]
        q = tl.load(src, mask=keep, other=0.0).to(tl.float32)
        k = tl.load(src + C, mask=keep, other=0.0).to(tl.float32)
        v = tl.load(src + 2 * C, mask=keep, other=0.0)
        q_norm = tl.sqrt(tl.sum(q * q, axis=1))
        k_norm = tl.sqrt(tl.sum(k * k, axis=1))
        q_scale = tl.where(q_norm > EPS, 1.0 / tl.maximum(q_norm, EPS), 0.0) \
            * tl.load(temperature + head)
        k_scale = tl.where(k_norm > EPS, 1.0 / tl.maximum(k_norm, EPS), 0.0)
        dtype = out.dtype.element_ty
        tl.store(dst, (q * q_scale[:, None]).to(dtype), mask=keep)
        tl.store(dst + plane, (k * k_scale[:, None]).to(dtype), mask=keep)
        tl.store(dst + 2 * plane, v.to(dtype), mask=keep)

    @triton.jit
    def _add_layer_norm_kernel(x, y, weight, bias, rows, C, eps,
                               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        # x, y: (rows, C); x += LayerNorm(y) * weight + bias, in float32
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
        c = tl.arange(0, BLOCK_C)
        keep = (r < rows)[:, None] & (c < C)[None, :]
        at = r[:, None] * C + c[None, :]
        v = tl.load(y + at, mask=keep, other=0.0).to(tl.float32)
        mean = tl.sum(v, axis=1) / C
        centred = tl.where(keep, v - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / C + eps)
        w = tl.load(weight + c, mask=c < C, other=0.0).to(tl.float32)
        b = tl.load(bias + c, mask=c < C, other=0.0).to(tl.float32)
        normed = centred * rstd[:, None] * w[None, :] + b[None, :]
        total = tl.load(x + at, mask=keep, other=0.0).to(tl.float32) + normed
        tl.store(x + at, total.to(x.dtype.element_ty), mask=keep)


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' own."""
    return torch.cuda.device(device) if device.type == 'cuda' else contextlib.nullcontext()


def qkv_heads(qkv: torch.Tensor, temperature: torch.Tensor, num_heads: int,
              N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit q times the temperature, unit k, and v, in SDPA's layout.

    Args:
        qkv: (B, L, 3C) the qkv projection of tokens in window order, L = num_windows * N.
        temperature: (heads, 1, 1) float32.
        num_heads: heads; d = C / heads.
        N: tokens per window.

    Returns:
        q, k, v: each (B * num_windows, heads, N, d) in ``qkv``'s dtype, contiguous.
    """
    B, L, C3 = qkv.shape
    C = C3 // 3
    D = C // num_heads
    qkv = qkv.contiguous()
    out = qkv.new_empty((3, B * L // N, num_heads, N, D))
    BLOCK_D = triton.next_power_of_2(D)
    BLOCK_T = max(1, _BLOCK_ELEMENTS // BLOCK_D)
    grid = (triton.cdiv(B * L, BLOCK_T), num_heads)
    # plane: the elements of each of q, k and v in out
    with _on(qkv.device):
        _qkv_heads_kernel[grid](qkv, temperature.float().contiguous(), out, B * L, B * L * C, N,
                                C, num_heads, D=D, BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, EPS=NORM_EPS)
    return out[0], out[1], out[2]


def add_layer_norm_(x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``x += norm(y)`` in place, the norm in float32; returns ``x``.

    Args:
        x: (..., C) contiguous, the residual stream (float32 under autocast).
        y: (..., C) the branch's output, any float dtype.
        norm: an affine ``nn.LayerNorm(C)``.
    """
    if not x.is_contiguous() or x.shape != y.shape:
        raise ValueError(f'add_layer_norm_ needs a contiguous x and y of its shape, got '
                         f'{tuple(x.shape)} (contiguous: {x.is_contiguous()}) and '
                         f'{tuple(y.shape)}')
    C = x.shape[-1]
    y = y.contiguous()
    BLOCK_C = triton.next_power_of_2(C)
    BLOCK_R = max(1, _BLOCK_ELEMENTS // BLOCK_C)
    rows = x.numel() // C
    with _on(x.device):
        _add_layer_norm_kernel[(triton.cdiv(rows, BLOCK_R),)](
            x, y, norm.weight, norm.bias, rows, C, norm.eps, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return x
