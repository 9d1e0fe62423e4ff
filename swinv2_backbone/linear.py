"""Linear layers on oneDNN's fp32 GEMM where it applies.

PyTorch sends fp32 ``F.linear`` / ``torch.mm`` on CPU to MKL, which on AMD processors runs
without AVX-512; oneDNN (which PyTorch ships, and uses itself for bf16 and in
``torch.compile``'s CPU fusions) has its own AVX-512 kernels. On the 2-core AMD EPYC this
package is benchmarked on, a 2048^3 fp32 GEMM runs at about 375 GFLOP/s with oneDNN against 150
with MKL, and the results agree to float rounding. oneDNN also fuses the bias and an exact
(erf) GELU into the GEMM.

:func:`linear` takes the oneDNN path for float32 CPU tensors outside autocast and falls back to
``F.linear`` everywhere else (other devices and dtypes, autocast with autograd, jit tracing, a
PyTorch without the op).
Under autograd it goes through :class:`OneDnnLinear`, whose backward uses oneDNN too.
Under CPU bf16 autocast without autograd (:func:`bf16_inference`) it runs oneDNN's bf16 GEMM,
with the bias and the GELU fused into it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .compat import autocast_dtype, autocast_enabled

__all__ = ['OneDnnLinear', 'bf16_inference', 'linear', 'onednn_applies']

_OP = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)
ONEDNN = _OP is not None and torch.backends.mkldnn.is_available()


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` would use oneDNN for these operands."""
    return (ONEDNN and x.device.type == 'cpu' and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not autocast_enabled('cpu')
            and not torch.jit.is_tracing())  # the tracer (FlopAnalyzer) cannot record the op


def bf16_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` is inference (no autograd) under CPU bf16 autocast, with oneDNN present:
    then :func:`linear` runs oneDNN's bf16 GEMM, and the attention computes in float32 (see
    ``WindowAttentionV2``)."""
    return (ONEDNN and x.device.type == 'cpu' and not torch.is_grad_enabled()
            and autocast_enabled('cpu') and autocast_dtype('cpu') == torch.bfloat16
            and not torch.jit.is_tracing())


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            gelu: bool) -> torch.Tensor:
    y = _OP(x.reshape(-1, x.shape[-1]), weight, bias, 'gelu' if gelu else 'none', [],
            'none' if gelu else '')
    return y.view(*x.shape[:-1], weight.shape[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, followed by the exact GELU when ``gelu``.

    Args:
        x: (..., in). weight: (out, in), any strides (a transposed view is not copied).
        bias: (out,) or None.

    Returns:
        (..., out)
    """
    if bf16_inference(x):  # the bias stays float32 (oneDNN takes it so)
        return _onednn(x.to(torch.bfloat16), weight.to(torch.bfloat16), bias, gelu)
    if not onednn_applies(x, weight):
        y = F.linear(x, weight, bias)
        return F.gelu(y) if gelu else y
    grads = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias))
    if not grads:
        return _onednn(x, weight, bias, gelu)
    y = OneDnnLinear.apply(x, weight, bias)
    return F.gelu(y) if gelu else y


class OneDnnLinear(torch.autograd.Function):
    """``F.linear`` with forward and both backward GEMMs on oneDNN (float32, CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias, False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.reshape(-1, weight.shape[0])  # (M, out)
        need = ctx.needs_input_grad
        dx = linear(grad, weight.t()).view(x.shape) if need[0] else None
        # (out, M) x (M, in), both as transposed views
        dw = linear(grad.t(), x.reshape(-1, x.shape[-1]).t()) if need[1] else None
        db = grad.sum(0) if need[2] and ctx.has_bias else None
        return dx, dw, db
