"""Fused Triton kernels for the batched path on GPUs.

On a GPU replaying the forward from a CUDA graph, fp16 inference is bound by the GPU's memory
traffic, and the largest kernels after the GEMMs and the attention were the ones these two
replace (the GPU profile in BENCHMARKS.md):

- :func:`qkv_heads`: the qkv projection's (B, L, 3C) output to SDPA's q, k and v, each
  (B*nW, heads, N, d), with q and k normalised and q scaled by the temperature
  (:func:`~swinv2_backbone.kernels.reference.inverse_norm`'s rule: a vector at or below
  ``NORM_EPS`` maps to zero). One read and one write, instead of a float32 norm reduction
  per q and k, a scaling kernel and a copy of v.
- :func:`add_layer_norm_`: a block's residual ``x += LayerNorm(y)`` in place, in float32 as
  autocast runs layer norms on GPUs, in one pass, instead of autocast's float32 copy of ``y``,
  the norm and the addition.

Both compute in float32 and round once to the output's dtype. In training (with autograd)
:func:`qkv_heads` runs with its backward kernel, which writes the projection's gradient in one
pass where the unfused path launches twelve ops for the q/k normalisation's gradient and two
copies; :func:`add_layer_norm_` runs without autograd only
(:attr:`~swinv2_backbone.runtime.execution.Execution.fused`). Triton >= 3.0 (the one PyTorch >= 2.4
installs with its CUDA builds); with ``TRITON_INTERPRET=1`` set before the first import,
Triton's interpreter runs them on CPU tensors, which is how the tests check them against the
unfused path on machines without a GPU.
"""
# no ``from __future__ import annotations`` here: Triton 3.0 and 3.1's interpreter knows a
# kernel's ``tl.constexpr`` parameters by their annotation objects, not their text
import contextlib

import torch

from ..hardware import TRITON
from .interface import Norm
from .reference import NORM_EPS

if TRITON:
    import triton
    import triton.language as tl

__all__ = ['add_layer_norm_', 'qkv_heads']


# elements a program holds per tensor: a few rows of a layer norm, tokens x head dims of q/k/v
_BLOCK_ELEMENTS = 4096

if TRITON:
    @triton.jit
    def _window_and_position(t, N, nW, POSITIONS: tl.constexpr):
        # of token t: its window (over all images) and its position in the window
        if POSITIONS:
            r = t % (nW * N)
            return (t // (nW * N)) * nW + r % nW, r // nW
        return t // N, t % N

    @triton.jit
    def _qkv_heads_kernel(qkv, temperature, out, inv, tokens, plane, N, nW, C, heads,
                          D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                          EPS: tl.constexpr, STORE_INV: tl.constexpr,
                          POSITIONS: tl.constexpr):
        # program (token block, head); qkv: (tokens, 3C), an image's tokens window by window
        # (token t = window * N + n) or, POSITIONS, by position (t = image * nW * N + n * nW
        # + w); out: (3, tokens / N, heads, N, D); inv (STORE_INV): (2, tokens, heads)
        # float32, the inverse norms of q and k (0 where clamped) for backward
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
        head = tl.program_id(1)
        j = tl.arange(0, BLOCK_D)
        keep = (t < tokens)[:, None] & (j < D)[None, :]
        src = qkv + t[:, None] * (3 * C) + head * D + j[None, :]
        window, n = _window_and_position(t, N, nW, POSITIONS)
        dst = out + ((window * heads + head) * N + n)[:, None] * D + j[None, :]
        q = tl.load(src, mask=keep, other=0.0).to(tl.float32)
        k = tl.load(src + C, mask=keep, other=0.0).to(tl.float32)
        v = tl.load(src + 2 * C, mask=keep, other=0.0)
        q_norm = tl.sqrt(tl.sum(q * q, axis=1))
        k_norm = tl.sqrt(tl.sum(k * k, axis=1))
        q_inv = tl.where(q_norm > EPS, 1.0 / tl.maximum(q_norm, EPS), 0.0)
        q_scale = q_inv * tl.load(temperature + head)
        k_scale = tl.where(k_norm > EPS, 1.0 / tl.maximum(k_norm, EPS), 0.0)
        if STORE_INV:
            at = t * heads + head
            tl.store(inv + at, q_inv, mask=t < tokens)
            tl.store(inv + tokens * heads + at, k_scale, mask=t < tokens)
        dtype = out.dtype.element_ty
        tl.store(dst, (q * q_scale[:, None]).to(dtype), mask=keep)
        tl.store(dst + plane, (k * k_scale[:, None]).to(dtype), mask=keep)
        tl.store(dst + 2 * plane, v.to(dtype), mask=keep)

    @triton.jit
    def _qkv_heads_backward_kernel(dq, dk, dv, out, inv, temperature, dqkv, partial, tokens,
                                   plane, N, nW, C, heads, sq_b, sq_w, sq_h, sq_n, sk_b, sk_w,
                                   sk_h, sk_n, sv_b, sv_w, sv_h, sv_n, D: tl.constexpr,
                                   BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                                   POSITIONS: tl.constexpr):
        # program (token block, head): the gradient of _qkv_heads_kernel's q, k and v, each
        # (B, nW, heads, N, D) with strides (s?_b, s?_w, s?_h, s?_n, 1), into dqkv
        # (tokens, 3C); partial: (token blocks, heads) float32, the temperature's gradient
        # summed over the block's tokens. reference.unit_vector_grad's rule: with s the temperature
        # (1 for k), o the output and g its gradient, (g s - o (o . g) / s) * inv
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
        head = tl.program_id(1)
        j = tl.arange(0, BLOCK_D)
        rows = t < tokens
        keep = rows[:, None] & (j < D)[None, :]
        window, n = _window_and_position(t, N, nW, POSITIONS)
        b, w = window // nW, window % nW  # image, window within it
        src = out + ((window * heads + head) * N + n)[:, None] * D + j[None, :]
        o_q = tl.load(src, mask=keep, other=0.0).to(tl.float32)
        o_k = tl.load(src + plane, mask=keep, other=0.0).to(tl.float32)
        g_q = tl.load(dq + (b * sq_b + w * sq_w + head * sq_h + n * sq_n)[:, None] + j[None, :],
                      mask=keep, other=0.0).to(tl.float32)
        g_k = tl.load(dk + (b * sk_b + w * sk_w + head * sk_h + n * sk_n)[:, None] + j[None, :],
                      mask=keep, other=0.0).to(tl.float32)
        g_v = tl.load(dv + (b * sv_b + w * sv_w + head * sv_h + n * sv_n)[:, None] + j[None, :],
                      mask=keep, other=0.0)
        temp = tl.load(temperature + head)
        inv_q = tl.load(inv + t * heads + head, mask=rows, other=0.0)
        inv_k = tl.load(inv + tokens * heads + t * heads + head, mask=rows, other=0.0)
        dot_q = tl.sum(o_q * g_q, axis=1)
        dot_k = tl.sum(o_k * g_k, axis=1)
        dx_q = (g_q * temp - o_q * (dot_q / temp)[:, None]) * inv_q[:, None]
        dx_k = (g_k - o_k * dot_k[:, None]) * inv_k[:, None]
        dst = dqkv + t[:, None] * (3 * C) + head * D + j[None, :]
        dtype = dqkv.dtype.element_ty
        tl.store(dst, dx_q.to(dtype), mask=keep)
        tl.store(dst + C, dx_k.to(dtype), mask=keep)
        tl.store(dst + 2 * C, g_v.to(dtype), mask=keep)
        tl.store(partial + tl.program_id(0) * heads + head, tl.sum(dot_q, axis=0) / temp)

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


def _launch(kernel, grid: tuple[int, ...], device: torch.device, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)`` on ``device``: every launch goes through here (the op
    counter, devkit/opcount.py, counts them on the meta device)."""
    with _on(device):
        kernel[grid](*args, **kwargs)


def _token_blocks(D: int) -> tuple[int, int]:
    """(BLOCK_T, BLOCK_D) of the q/k/v kernels: tokens and head dims a program holds."""
    BLOCK_D = triton.next_power_of_2(D)
    return max(1, _BLOCK_ELEMENTS // BLOCK_D), BLOCK_D


def _qkv_heads(qkv: torch.Tensor, temperature: torch.Tensor, num_heads: int, N: int,
               store_inv: bool, tokens: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """out (3, tokens / N, heads, N, d) and, with ``store_inv``, the inverse norms (2, tokens,
    heads) float32."""
    B, L, C3 = qkv.shape
    C = C3 // 3
    D = C // num_heads
    out = qkv.new_empty((3, B * L // N, num_heads, N, D))
    # without store_inv the kernel never touches inv: out stands in for the pointer
    inv = qkv.new_empty((2, B * L, num_heads), dtype=torch.float32) if store_inv else out
    BLOCK_T, BLOCK_D = _token_blocks(D)
    # plane: the elements of each of q, k and v in out
    _launch(_qkv_heads_kernel, (triton.cdiv(B * L, BLOCK_T), num_heads), qkv.device,
            qkv, temperature.float().contiguous(), out, inv, B * L, B * L * C, N, L // N, C,
            num_heads, D=D, BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, EPS=NORM_EPS,
            STORE_INV=store_inv, POSITIONS=tokens == 'positions')
    return out, inv if store_inv else None


class _QkvHeads(torch.autograd.Function):
    """:func:`qkv_heads` with autograd: forward keeps the inverse norms besides its output
    (which SDPA saves anyway), backward is one kernel writing the projection's gradient
    (q and k through the unit vectors, v as it is) and the temperature's per-block sums."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, temperature: torch.Tensor, num_heads: int, N: int,
                tokens: str):
        out, inv = _qkv_heads(qkv, temperature, num_heads, N, True, tokens)
        ctx.save_for_backward(out, inv, temperature)
        ctx.shape, ctx.tokens = qkv.shape, tokens
        return out[0], out[1], out[2]

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor):
        out, inv, temperature = ctx.saved_tensors
        B, L, C3 = ctx.shape
        _, windows, heads, N, D = out.shape
        nW = windows // B
        # each gradient as (B, nW, heads, N, D): SDPA's layout for plain windows (images x
        # windows, heads) or for shifted ones (images, windows x heads), any strides

        def five(g: torch.Tensor | None) -> torch.Tensor:
            g = torch.zeros_like(out[0]) if g is None else g
            return g.unflatten(0, (B, nW)) if g.shape[1] == heads else \
                g.unflatten(1, (nW, heads))
        grads = [five(g) for g in (dq, dk, dv)]
        if any(g.stride(-1) != 1 for g in grads):
            grads = [g.contiguous() for g in grads]
        BLOCK_T, BLOCK_D = _token_blocks(D)
        grid = (triton.cdiv(B * L, BLOCK_T), heads)
        dqkv = out.new_empty(ctx.shape)
        partial = out.new_empty(grid, dtype=torch.float32)
        strides = [s for g in grads for s in g.stride()[:4]]
        _launch(_qkv_heads_backward_kernel, grid, out.device, *grads, out, inv,
                temperature.float().contiguous(), dqkv, partial, B * L, B * L * C3 // 3, N, nW,
                C3 // 3, heads, *strides, D=D, BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D,
                POSITIONS=ctx.tokens == 'positions')
        dtemperature = partial.sum(0).view(temperature.shape).to(temperature.dtype) \
            if ctx.needs_input_grad[1] else None
        return dqkv, dtemperature, None, None, None


def qkv_heads(qkv: torch.Tensor, temperature: torch.Tensor, num_heads: int, N: int,
              grad: bool = False,
              tokens: str = 'windows') -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit q times the temperature, unit k, and v, in SDPA's layout.

    Args:
        qkv: (B, L, 3C) the qkv projection of tokens in ``tokens`` order (window by window
            or by position in the window: see
            :func:`~swinv2_backbone.kernels.device.window_attention`), L = num_windows * N.
        temperature: (heads, 1, 1).
        num_heads: heads; d = C / heads.
        N: tokens per window.
        grad: autograd records this forward: through :class:`_QkvHeads`, whose backward
            gives the gradients of ``qkv`` and ``temperature`` (a clamped vector, the zero
            padding's k, passes none, as
            :func:`~swinv2_backbone.kernels.reference.inverse_norm` says).

    Returns:
        q, k, v: each (B * num_windows, heads, N, d) in ``qkv``'s dtype, contiguous.
    """
    qkv = qkv.contiguous()
    if grad:
        return _QkvHeads.apply(qkv, temperature, num_heads, N, tokens)
    out, _ = _qkv_heads(qkv, temperature, num_heads, N, False, tokens)
    return out[0], out[1], out[2]


def add_layer_norm_(x: torch.Tensor, y: torch.Tensor, norm: Norm) -> torch.Tensor:
    """``x += norm(y)`` in place, the norm in float32; returns ``x``.

    Args:
        x: (..., C) contiguous, the residual stream (float32 under autocast).
        y: (..., C) the branch's output, any float dtype.
        norm: an affine LayerNorm over C.
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
    _launch(_add_layer_norm_kernel, (triton.cdiv(rows, BLOCK_R),), x.device,
            x, y, norm.weight, norm.bias, rows, C, norm.eps, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return x
