"""Linear layers on oneDNN's GEMM: the cpu path's matrix products.

PyTorch sends float32 ``F.linear`` / ``torch.mm`` on CPU to MKL, which on AMD processors runs
without AVX-512; oneDNN (which PyTorch ships) has its own AVX-512 kernels, agrees with MKL to
float rounding, and fuses the bias and an exact (erf) GELU into the GEMM. Which library wins
depends on the CPU and on training or inference (BENCHMARKS.md, oneDNN against MKL), so float32
linears go to oneDNN where :data:`~swinv2_backbone.hardware.ONEDNN_FP32` (probed once at import)
says, unless a :class:`~swinv2_backbone.runtime.execution.Request` asks otherwise.

:func:`linear` runs oneDNN where the forward's
:class:`~swinv2_backbone.runtime.execution.Execution` allows it (``onednn``: float32 operands;
``bf16_inference``: oneDNN's bf16 GEMM, the bias and the GELU fused) and ``F.linear``
everywhere else; under autograd through :class:`OneDnnLinear`, whose backward uses oneDNN too.
In bf16 inference each float32 weight is cast to bf16 once and kept while it is unchanged
(:func:`bf16_weight`), not once per chunk or per forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from ..runtime.execution import Execution

__all__ = ['OneDnnLinear', 'backward_gemm', 'bf16_weight', 'gemm', 'linear', 'linear_add',
           'patch_projection']

_OP = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)

# weight -> (its version counter, its packed bf16 copy); an entry goes with its weight
_BF16_WEIGHTS = WeakIdKeyDictionary()


def bf16_weight(weight: torch.Tensor, cache: bool, rows: int) -> torch.Tensor:
    """``weight`` in bf16 for :func:`gemm`; with ``cache`` (a forward that may keep what it
    computes from the weights: :attr:`~swinv2_backbone.runtime.execution.Execution.may_cache`)
    packed into oneDNN's blocked layout for GEMMs of about ``rows`` rows (any number runs),
    once, and kept while the weight is unchanged (its version counter: an optimizer step or
    ``load_state_dict`` makes a new one). The packed copy costs half the float32 weight's
    memory, for as long as the weight lives. Weights made under ``inference_mode`` have no
    version counter: never cached."""
    if not cache or weight.is_inference():
        return weight.to(torch.bfloat16)
    hit = _BF16_WEIGHTS.get(weight)
    if hit is None or hit[0] != weight._version:
        # made outside inference_mode: a tensor every later forward may use
        with torch.inference_mode(False):
            packed = torch.ops.mkldnn._reorder_linear_weight(
                weight.detach().to(torch.bfloat16), rows)
            hit = _BF16_WEIGHTS[weight] = (weight._version, packed)
    return hit[1]


def gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
         gelu: bool = False) -> torch.Tensor:
    """oneDNN's ``x @ weight.T (+ bias)`` (then the exact GELU), no autograd.

    Args:
        x: (..., in). weight: (out, in), any strides (a transposed view is not copied).
        bias: (out,) or None.

    Returns:
        (..., out)
    """
    y = _OP(x.reshape(-1, x.shape[-1]), weight, bias, 'gelu' if gelu else 'none', [],
            'none' if gelu else '')
    return y.view(*x.shape[:-1], weight.shape[0])


def _float32(*tensors: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 for t in tensors)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           execution: Execution, gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, followed by the exact GELU when ``gelu``: on oneDNN where
    ``execution`` allows it (see the module docstring), else ``F.linear``."""
    if execution.bf16_inference:  # the bias stays float32 (oneDNN takes it so)
        x = x.to(torch.bfloat16)
        return gemm(x, bf16_weight(weight, execution.may_cache, x.numel() // x.shape[-1]),
                    bias, gelu)
    if not (execution.onednn and _float32(x, weight)):
        y = F.linear(x, weight, bias)
        return F.gelu(y) if gelu else y
    if not execution.grad:
        return gemm(x, weight, bias, gelu)
    y = OneDnnLinear.apply(x, weight, bias)
    return F.gelu(y) if gelu else y


def backward_gemm(x: torch.Tensor, weight: torch.Tensor, execution: Execution,
                  add: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T`` (plus ``add``) inside a backward pass of the forward ``execution``
    ran: oneDNN where its float32 linears ran there, :func:`linear_add` for others (and for
    bf16 under autocast, float64 in gradcheck)."""
    if execution.onednn and _float32(x, weight):
        y = gemm(x, weight)
        return y if add is None else y.add_(add)
    return linear_add(x, weight, add)


def linear_add(x: torch.Tensor, weight: torch.Tensor,
               add: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight)`` plus ``add`` (None: nothing): one ``addmm`` where the dtypes
    agree; an ``add`` of another dtype (the float32 residual stream's gradient under autocast)
    gives its dtype."""
    if add is None:
        return F.linear(x, weight)
    if add.dtype == x.dtype:
        return torch.addmm(add, x, weight.t())
    return add + F.linear(x, weight)


class OneDnnLinear(torch.autograd.Function):
    """``F.linear`` with forward and both backward GEMMs on oneDNN (float32, CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return gemm(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.reshape(-1, weight.shape[0])  # (M, out)
        need = ctx.needs_input_grad
        dx = gemm(grad, weight.t()).view(x.shape) if need[0] else None
        # (out, M) x (M, in), both as transposed views
        dw = gemm(grad.t(), x.reshape(-1, x.shape[-1]).t()) if need[1] else None
        db = grad.sum(0) if need[2] and ctx.has_bias else None
        return dx, dw, db


def patch_projection(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, p: int,
                     execution: Execution) -> torch.Tensor:
    """A convolution whose stride is its kernel p (an int: a traced graph's shapes are tensors),
    channels-last: (B, C, H, W) -> (B, H/p, W/p, C_out) (H, W multiples of p), as one GEMM of
    the image's p x p patches where ``execution.patch_gemm`` (one copy of the image, no
    channels-last copy of the output). In bf16 inference it stays float32: cheap, and in bf16
    the largest part of stage 1's error."""
    if not execution.patch_gemm:
        return F.conv2d(x, weight, bias, stride=p).permute(0, 2, 3, 1)
    B, C, H, W = x.shape
    # (B, C, h, p, w, p) -> (B, h, w, C, p, p): the conv weight's (C_out, C, p, p) order
    patches = x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(
        B, H // p, W // p, C * p * p)
    weight = weight.flatten(1)
    if execution.bf16_inference:
        with torch.autocast('cpu', enabled=False):
            return F.linear(patches.to(weight.dtype), weight, bias)
    return linear(patches, weight, bias, execution)
