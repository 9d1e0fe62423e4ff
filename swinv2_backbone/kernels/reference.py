"""SwinV2's window attention in plain PyTorch: the reference every backend equals.

    logits = temperature * cos(q, k) + CPB_SCALE * sigmoid(cpb(coords)) + shift mask
    out    = softmax(logits) @ v

``temperature = exp(min(logit_scale, LOGIT_SCALE_MAX))`` per head; the CPB is a
2 -> hidden -> heads MLP of log-spaced relative coordinates; the shift mask is ``MASK_VALUE``
between tokens of a shifted window that were not adjacent, 0 elsewhere (built with the windows,
:func:`~swinv2_backbone.ops.shift_attn_mask`). The constants and the formulas live here only;
the backends (:mod:`.cpu`, :mod:`.device`, :mod:`.fused`) import them, and
tests/test_attention.py checks each against the official formula written out apart.

Beside the plain forms: the q/k normalisation every path shares (:func:`inverse_norm`) and its
gradient (:func:`unit_vector_grad`), and autograd functions for the temperature and the CPB
whose backward runs fewer ops than autograd's.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..ops import MASK_VALUE

__all__ = ['CPB_SCALE', 'LOGIT_SCALE_MAX', 'MASK_VALUE', 'NORM_EPS', 'PositionBias',
           'Temperature', 'attention_logits', 'inverse_norm', 'position_bias',
           'reference_attention', 'scaled_unit_qk', 'split_windows', 'temperature',
           'unit_vector_grad',
           'unit_vectors']

# Upper bound of the learned temperature: exp(logit_scale) <= 100, as in the paper.
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)
# The CPB's output range: position bias = CPB_SCALE * sigmoid(cpb), in (0, 16).
CPB_SCALE = 16.0
# F.normalize's epsilon: a norm at or below it is treated as zero.
NORM_EPS = 1e-12


# ---------------------------------------------------------------- the terms of the logits
def temperature(logit_scale: torch.Tensor) -> torch.Tensor:
    """(heads, 1, 1) ``exp(min(logit_scale, LOGIT_SCALE_MAX))``."""
    return torch.clamp(logit_scale, max=LOGIT_SCALE_MAX).exp()


def position_bias(table: torch.Tensor, index: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                  w2: torch.Tensor) -> torch.Tensor:
    """``CPB_SCALE * sigmoid(cpb(table))`` gathered by ``index``: (heads, len(index)).

    The CPB MLP ``Linear(2, hidden) -> ReLU -> Linear(hidden, heads, bias=False)`` runs on the
    ((2w-1)^2, 2) coordinate ``table`` as a matrix and the gather comes last, into a
    contiguous tensor.
    """
    return _gather_bias(_cpb(table, w1, b1, w2)[1], index)


def _cpb(table, w1, b1, w2) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPB MLP's hidden layer and ``sigmoid(cpb)``, ((2w-1)^2, heads)."""
    hidden = torch.addmm(b1, table, w1.t()).relu_()
    return hidden, torch.sigmoid(hidden @ w2.t())


def _gather_bias(s: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return (s * CPB_SCALE).t().index_select(1, index)


class Temperature(torch.autograd.Function):
    """:func:`temperature` with a backward of two ops (autograd's takes three)."""

    @staticmethod
    def forward(ctx, logit_scale: torch.Tensor) -> torch.Tensor:
        t = temperature(logit_scale)
        ctx.save_for_backward(logit_scale, t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        logit_scale, t = ctx.saved_tensors
        return (grad * t).mul_(logit_scale <= LOGIT_SCALE_MAX)


class PositionBias(torch.autograd.Function):
    """:func:`position_bias` with a hand-written backward: the gather's by ``index_add`` with
    ``CPB_SCALE`` as its ``alpha``, the sigmoid's and the MLP's by their kernels (one op fewer
    than autograd's; every block runs it)."""

    @staticmethod
    def forward(ctx, table, index, w1, b1, w2):
        hidden, s = _cpb(table, w1, b1, w2)
        ctx.save_for_backward(table, index, w1, w2, hidden, s)
        return _gather_bias(s, index)

    @staticmethod
    def backward(ctx, grad):
        table, index, w1, w2, hidden, s = ctx.saved_tensors
        need = ctx.needs_input_grad
        ds = grad.new_zeros(s.shape[::-1]).index_add_(1, index, grad, alpha=CPB_SCALE)
        dz = torch.ops.aten.sigmoid_backward(ds.t(), s)
        dw2 = dz.t() @ hidden if need[4] else None
        dh = torch.ops.aten.threshold_backward(dz @ w2, hidden, 0)
        dw1 = dh.t() @ table if need[2] else None
        db1 = dh.sum(0) if need[3] else None
        return None, None, dw1, db1, dw2


# ---------------------------------------------------------------- q/k normalisation
def inverse_norm(t: torch.Tensor) -> torch.Tensor:
    """``1 / |t|`` over the last dim, kept, in float32 at least; 0 where ``|t| <= NORM_EPS``.

    ``t * inverse_norm(t)`` is the unit vector ``F.normalize`` gives. A vector at or below the
    epsilon (the zero padding's k, which has no bias) maps to zero and passes no gradient,
    where ``F.normalize``'s would be ``dy / NORM_EPS``, which overflows fp16 under AMP.
    """
    dtype = torch.promote_types(t.dtype, torch.float32)
    norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=dtype)
    return torch.reciprocal(F.threshold(norm, NORM_EPS, math.inf))


def scaled_unit_qk(qk: torch.Tensor, temperature: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The unit q times ``temperature`` (heads, 1, 1) and the unit k, from the raw (2, ..., d)
    q and k, into ``out`` (which may be ``qk``): float32 products rounded once to ``out``'s
    dtype, without autograd."""
    scale = inverse_norm(qk)
    scale[0].mul_(temperature)
    return torch.mul(qk, scale, out=out)


def unit_vector_grad(unit: torch.Tensor, grad: torch.Tensor, inv: torch.Tensor,
                     dot: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient through ``unit = t * inverse_norm(t)``: ``(grad - unit (unit . grad)) *
    inv``, zero where the norm was clamped (``inv`` 0). Every hand-written backward uses it.

    Args:
        unit: the unit vectors, (..., d).
        grad: d(loss)/d(unit), (..., d).
        inv: :func:`inverse_norm` of ``t`` (..., 1), times any factor s the unit vector was
            scaled by after normalising (the temperature of q), which ``grad`` does not carry.
        dot: ``(unit * grad).sum(-1, keepdim=True)`` where the caller has it already. A
            ``unit`` may also be the unit vector times s, with ``grad`` the gradient of that
            product, if ``dot`` is ``(unit * grad).sum(-1, keepdim=True) / s**2``.

    Returns:
        d(loss)/d(t), (..., d)
    """
    if dot is None:
        dot = (unit * grad).sum(-1, keepdim=True)
    return (grad - unit * dot) * inv


def unit_vectors(t: torch.Tensor) -> torch.Tensor:
    """``F.normalize(t, dim=-1)`` with the norm in float32 at least: the forward of
    ``t * inverse_norm(t)`` for graphs without autograd (the ONNX export), which runtimes fuse
    better without the zero-norm mask. Vectors of norm in (0, NORM_EPS] map to
    ``t / NORM_EPS``, as in the official code."""
    dtype = torch.promote_types(t.dtype, torch.float32)
    return t / torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=dtype).clamp_min(NORM_EPS)


# ---------------------------------------------------------------- the attention
def attention_logits(q: torch.Tensor, k: torch.Tensor, pos_bias: torch.Tensor,
                     mask: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``temperature * cos(q, k) + pos_bias + shift mask``.

    Args:
        q: (n, heads, N, d) unit queries with the temperature folded in.
        k: (n, heads, N, d) unit keys.
        pos_bias: (heads, N, N) the position bias.
        mask: (n, N, N) shift-mask rows of these n windows, or None.
        out: (n * heads, N, N) buffer to write into (the CPU kernels reuse one).

    Returns:
        (n, heads, N, N)
    """
    n, h, N, d = q.shape
    if out is None:
        logits = q @ k.transpose(-2, -1)
    else:
        logits = torch.bmm(q.reshape(-1, N, d), k.reshape(-1, N, d).transpose(1, 2),
                           out=out).view(n, h, N, N)
    logits += pos_bias
    if mask is not None:
        logits += mask.unsqueeze(1).to(logits.dtype)
    return logits


def reference_attention(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                        temperature: torch.Tensor, pos_bias: torch.Tensor,
                        mask: torch.Tensor | None, num_heads: int,
                        dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        exporting: bool = False) -> torch.Tensor:
    """The window attention before the output projection, as the official code writes it.

    Args:
        x: (B_, N, C) windows.
        weight, qkv_bias: the qkv projection, (3C, C) and (3C,) or None.
        temperature: (heads, 1, 1). pos_bias: (heads, N, N).
        mask: (B_, N, N) shift mask, one row per window, or None.
        dropout: applied to the attention weights (attention dropout), or None.
        exporting: a graph without autograd: q and k by :func:`unit_vectors`.

    Returns:
        (B_, N, C)
    """
    B_, N, C = x.shape
    qkv = F.linear(x, weight, qkv_bias)
    # (B_, N, 3C) -> (3, B_, heads, N, C/heads)
    q, k, v = qkv.reshape(B_, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    if exporting:
        q, k = unit_vectors(q) * temperature, unit_vectors(k)
    else:
        q, k = q * inverse_norm(q) * temperature, k * inverse_norm(k)
    attn = attention_logits(q.to(v.dtype), k.to(v.dtype), pos_bias, mask).softmax(dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    return (attn @ v).transpose(1, 2).reshape(B_, N, C)  # (B_, heads, N, d) -> (B_, N, C)


def split_windows(x: torch.Tensor, mask: torch.Tensor | None,
                  window: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B_, N, C) windows of tokens ``x`` and the shift mask with one row per window.

    Args:
        x: (B, L, C) tokens window by window, or (B, nW, N, C) windows (the export path,
            whose symbolic sizes are not divided).
        mask: (nW, N, N) an image's shift mask, or None.
    """
    N = window * window
    if x.dim() == 4:
        windows, images = x.flatten(0, 1), x.shape[0]
    else:
        windows = x.view(-1, N, x.shape[-1])
        images = None if mask is None else len(windows) // len(mask)
    if mask is not None:  # window w of image b is row b*nW + w
        mask = mask.repeat(images, 1, 1)
    return windows, mask
