"""The batched path: whole-stage ops for GPUs, no Python loop over images or chunks.

Per block: one qkv GEMM, one q/k normalisation
(:func:`~swinv2_backbone.kernels.reference.scaled_unit_qk`) and one
``F.scaled_dot_product_attention`` call. The logit bias SDPA adds is laid out so that
nothing is materialised per image and PyTorch's fused (memory-efficient / cuDNN) kernels stay
eligible:

- plain windows: queries (B*nW, heads, N, d), bias ``pos_bias`` (1, heads, N, N), broadcast;
- shifted windows: windows and heads together as SDPA's heads, queries (B, nW*heads, N, d), bias
  ``pos_bias + shift mask`` (1, nW*heads, N, N), one per stage shape, broadcast over images;
  the stage orders these tokens by their position in the window (the n-th tokens of all
  windows, then the next n), the order SDPA's fused kernels write the output in, so that it
  is not copied, nor its gradient.

Backward is autograd's (SDPA's fused backward), except for :class:`QkvHeads`, which saves only
its outputs (the tensors SDPA saves anyway) instead of the float32 vectors autograd would keep
and writes the projection's gradient in one pass, :class:`ResidualLinear` (the qkv projection,
whose backward adds the residual's gradient in) and :class:`AmpLayerNorm`, the blocks' norms in
training under autocast, which keeps its input in the autocast dtype instead of autocast's
float32 copy.
Under fp16/bf16 autocast the q/k normalisation runs in float32 and a vector whose norm is
clamped (the zero padding's k) gets no gradient, so nothing overflows; no host
synchronisation, and it traces under ``torch.compile``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops import drop_path
from ..runtime.execution import Execution
from .cpu import GeluMlp
from .fused import add_layer_norm_, qkv_heads
from .interface import BlockWeights, Norm
from .onednn import linear_add
from .reference import inverse_norm, scaled_unit_qk, unit_vector_grad

__all__ = ['AmpLayerNorm', 'QkvHeads', 'ResidualLinear', 'attention', 'block',
           'window_attention']


class QkvHeads(torch.autograd.Function):
    """The qkv projection's (B, L, 3C) output to SDPA's q, k and v, each (B, nW, heads, N, d):
    unit q times the temperature and unit k, computed in float32
    (:func:`~swinv2_backbone.kernels.reference.inverse_norm`) and rounded once to the
    projection's dtype, and v; in training the unfused twin of
    :func:`~swinv2_backbone.kernels.fused.qkv_heads`.

    Saves its q/k outputs and their float32 scales (the inverse norms, q's times the
    temperature): backward recovers the unit vectors from the outputs, so nothing is kept
    besides what the attention saves anyway. Backward writes the projection's gradient in its
    (B, L, 3C) layout in one ``cat`` and the temperature's from the same dot products: ten ops
    (the q/k normalisation through autograd, its split and permute took eighteen).
    ``tokens``: the order of the L tokens, ``'windows'`` (window by window) or
    ``'positions'`` (the n-th token of every window, then the next n: see
    :func:`window_attention`).
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, temperature: torch.Tensor, num_heads: int, N: int,
                tokens: str):
        heads = _heads(qkv, num_heads, N, tokens)  # (3, B, nW, heads, N, d)
        qk = heads[:2]
        inv = inverse_norm(qk)  # (2, ..., 1) float32, 0 for a clamped (zero) vector
        scale = torch.cat((inv[:1] * temperature, inv[1:]))
        # float32 products rounded once to qkv's dtype, in one kernel (no float32 copy); into a
        # contiguous tensor, which torch.compile requires of out=
        out = torch.mul(qk, scale, out=qk.new_empty(qk.shape))
        ctx.save_for_backward(out, scale, temperature)
        ctx.tokens = tokens
        # v a copy: a view would keep the whole projection alive for SDPA's backward
        return out[0], out[1], heads[2].contiguous()

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor):
        out, scale, temperature = ctx.saved_tensors
        shape = out.shape[1:]  # (B, nW, heads, N, d)
        scaled = out.to(scale.dtype)  # (unit q * temperature, unit k)
        grad = torch.stack((dq.reshape(shape), dk.reshape(shape))).to(scale.dtype)
        dot = (scaled * grad).sum(-1, keepdim=True)
        dot[0].div_(temperature)  # unit q . grad q: summed, the temperature's gradient
        dtemperature = dot[0].sum((0, 1, 3, 4)).view(temperature.shape) \
            if ctx.needs_input_grad[1] else None
        dot[0].div_(temperature)  # for unit_vector_grad, whose unit q is scaled
        dqk = unit_vector_grad(scaled, grad, scale, dot).to(out.dtype)
        B, nW, h, N, d = shape
        # the three gradients into the projection's (B, L, 3C) layout, by one cat
        parts = [_tokens_major(p, ctx.tokens).unsqueeze(3)
                 for p in (dqk[0], dqk[1], dv.reshape(shape))]
        return torch.cat(parts, 3).view(B, nW * N, -1), dtemperature, None, None, None


class ResidualLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` and ``x`` again (autograd makes it a view of ``x``): the
    residual adds the branch's output to that, so backward receives the residual's gradient
    and adds it into x's by the GEMM (one ``addmm`` where autograd would add the two, a pass
    over the block's activations and on a GPU a launch). ``dtype``: the autocast dtype the
    product runs in (x is kept in it for backward), or None.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                dtype: torch.dtype | None):
        xc, wc, bc = (t if t is None or dtype is None else t.to(dtype) for t in (x, weight, bias))
        ctx.save_for_backward(xc, wc)
        ctx.has_bias = bias is not None
        return F.linear(xc, wc, bc), x

    @staticmethod
    def backward(ctx, grad: torch.Tensor, residual: torch.Tensor | None):
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad = grad.reshape(-1, weight.shape[0]).to(x.dtype)  # (M, out)
        dweight = grad.t() @ x.reshape(-1, x.shape[-1]) if need[1] else None
        dbias = grad.sum(0) if need[2] and ctx.has_bias else None
        dx = linear_add(grad, weight.t(), None if residual is None else
                        residual.reshape(grad.shape[0], -1)).view(x.shape) if need[0] else None
        return dx, dweight, dbias, None


def _heads(qkv: torch.Tensor, num_heads: int, N: int, tokens: str) -> torch.Tensor:
    """(B, L, 3C) -> (3, B, nW, heads, N, d), a view, for tokens in ``tokens`` order."""
    B, L, C3 = qkv.shape
    if tokens == 'windows':
        return qkv.view(B, L // N, N, 3, num_heads, -1).permute(3, 0, 1, 4, 2, 5)
    return qkv.view(B, N, L // N, 3, num_heads, -1).permute(3, 0, 2, 4, 1, 5)


def _tokens_major(t: torch.Tensor, tokens: str) -> torch.Tensor:
    """(B, nW, heads, N, d) -> (B, nW, N, heads, d), or (B, N, nW, heads, d) for tokens in
    ``'positions'`` order: a view with the tokens in their order before the heads."""
    t = t.transpose(2, 3)
    return t if tokens == 'windows' else t.transpose(1, 2)


def window_attention(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                     temperature: torch.Tensor, pos_bias: torch.Tensor,
                     mask: torch.Tensor | None, num_heads: int,
                     fused: bool = False, grad: bool = True,
                     tokens: str = 'windows',
                     amp: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """qkv projection and scaled cosine attention of every window of a stage at once.

    Args:
        x: (B, L, C) tokens, L = num_windows * N, in ``tokens`` order.
        weight, qkv_bias: the qkv projection, (3C, C) and (3C,) or None.
        temperature: (heads, 1, 1) ``exp(clamped logit_scale)``.
        pos_bias: (heads, N, N) position bias.
        mask: (num_windows, N, N) shift mask, or None.
        fused: q, k and v from :func:`~swinv2_backbone.kernels.fused.qkv_heads`, one Triton
            kernel (and one in backward).
        grad: autograd records this forward: the projection through :class:`ResidualLinear`
            and q, k and v through :class:`QkvHeads`.
        tokens: ``'windows'``: window by window (window w's n-th token at w * N + n);
            ``'positions'``: the n-th tokens of all windows, then the (n+1)-th (at
            n * num_windows + w), for shifted windows (with a ``mask``), whose attention
            output SDPA's fused kernels write in that order: no copy each way.
        amp: the autocast dtype, or None.

    Returns:
        (B, L, C), before the output projection, in ``tokens`` order; and ``x`` as the
        residual is to add the branch's output to (:class:`ResidualLinear`).
    """
    B, L, C = x.shape
    N = pos_bias.shape[-1]
    nW, h = L // N, num_heads
    qkv, x = ResidualLinear.apply(x, weight, qkv_bias, amp) if grad \
        else (F.linear(x, weight, qkv_bias), x)
    if fused:  # each (B*nW, heads, N, d)
        q, k, v = qkv_heads(qkv, temperature, h, N, grad, tokens)
    elif grad:  # each (B, nW, heads, N, d)
        q, k, v = QkvHeads.apply(qkv, temperature, h, N, tokens)
    else:
        qk, v = _heads(qkv, h, N, tokens).split((2, 1))
        q, k = scaled_unit_qk(qk, temperature, qk.new_empty(qk.shape))
        # a view: SDPA's fused kernels take strides (shifted windows' reshape below copies)
        v = v.squeeze(0)
    d = v.shape[-1]
    if mask is None:  # windows as SDPA's batch: (B*nW, heads, N, d), bias (1, heads, N, N)
        bias = pos_bias.to(v.dtype).unsqueeze(0)
        q, k, v = (t.reshape(B * nW, h, N, d) for t in (q, k, v))
    else:  # windows x heads as SDPA's heads: (B, nW*heads, N, d), bias (1, nW*heads, N, N)
        bias = (pos_bias + mask.unsqueeze(1)).to(v.dtype).view(1, nW * h, N, N)
        q, k, v = (t.reshape(B, nW * h, N, d) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    # (B, nW, heads, N, d) -> tokens first, heads x d last -> (B, L, C)
    return _tokens_major(out.view(B, nW, h, N, d), tokens).reshape(B, L, C), x


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


def attention(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
              temperature: torch.Tensor, pos_bias: torch.Tensor, mask: torch.Tensor | None,
              num_heads: int, window: int,
              execution: Execution) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention backends ``'batched'`` and ``'batched, fused'``: :func:`window_attention`
    as ``execution`` says (shifted windows' tokens in ``execution.shifted_tokens`` order)."""
    return window_attention(x, weight, qkv_bias, temperature, pos_bias, mask, num_heads,
                            execution.fused, execution.grad,
                            'windows' if mask is None else execution.shifted_tokens,
                            execution.amp)


def block(x: torch.Tensor, w: BlockWeights, window: int, mask: torch.Tensor | None,
          real: torch.Tensor | None, execution: Execution) -> torch.Tensor:
    """A block on (B, L, C) tokens, whole-stage ops. In training the qkv projection and fc1
    return the residual's input as a view through which backward adds the residual's gradient
    in (:class:`ResidualLinear`, :class:`~swinv2_backbone.kernels.cpu.GeluMlp`); in inference
    with ``execution.fused`` each ``x + norm(y)`` is one Triton kernel. ``real`` is not used."""
    B, L, C = x.shape
    y, x = attention(x, w.qkv_weight, w.qkv_bias, w.temperature, w.pos_bias, mask, w.num_heads,
                     window, execution)
    x = _residual(x, F.linear(y, w.proj_weight, w.proj_bias), w.norm1, w.drop_path, execution)
    if execution.grad:
        y, x = GeluMlp.apply(x.reshape(-1, C), w.fc1_weight, w.fc1_bias, w.fc2_weight,
                             w.fc2_bias, execution, w.recompute_mlp)
        y, x = y.view(B, L, C), x.view(B, L, C)
    else:
        y = F.linear(F.gelu(F.linear(x, w.fc1_weight, w.fc1_bias)), w.fc2_weight, w.fc2_bias)
    x = _residual(x, y, w.norm2, w.drop_path, execution)
    return x if w.norm3 is None else w.norm3(x)


def _residual(x: torch.Tensor, y: torch.Tensor, norm: Norm, drop: float,
              execution: Execution) -> torch.Tensor:
    """``x + drop_path(norm(y))``: fused into ``x`` in inference with ``execution.fused``; in
    training under autocast through :class:`AmpLayerNorm`."""
    if execution.fused and not execution.grad and drop == 0.0:
        return add_layer_norm_(x, y, norm)
    if execution.grad and execution.amp is not None and y.dtype == execution.amp:
        y = AmpLayerNorm.apply(y, norm.weight, norm.bias, norm.eps)
    else:
        y = norm(y)
    return x + drop_path(y, drop)
