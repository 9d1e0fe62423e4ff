"""The cpu path: whole blocks on oneDNN GEMMs, attention a few windows at a time into reused
buffers, and lean autograd functions for training.

On a CPU the attention of 64-token windows is fastest as bmm, softmax, bmm over chunks that
stay in cache, and training memory is dominated by what autograd saves. So:

- :func:`block_inference` runs a block in place, ``Execution.chunk_tokens`` at a time (one
  image's windows), the MLP on the map's tokens only; :func:`block_train` runs it with the
  autograd functions below;
- :func:`attend` builds the logits (:func:`~swinv2_backbone.kernels.reference.attention_logits`)
  of ``Execution.chunk_logits`` at a time into one buffer, softmax in place (flushed where
  subnormal probabilities can arise: :func:`mask_scales`), P @ V into q's storage;
- :func:`head_major` splits a qkv projection into unit q (temperature folded in), unit k and v;
- :class:`CosineAttention` (qkv projection + attention) saves the unit q/k/v and recomputes the
  attention maps in backward, a few windows at a time;
- :class:`GeluMlp` saves the fc1 output and recomputes the GELU in backward;
- :func:`channels_first` copies a stage's output map to NCHW a few rows at a time.

Each is tested against the reference (tests/test_attention.py, tests/test_paths.py) and with
``gradcheck`` (tests/test_kernels.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..ops import drop_path, select_tokens
from ..runtime.execution import Execution
from .interface import BlockWeights
from .onednn import backward_gemm, linear
from .reference import attention_logits, inverse_norm, scaled_unit_qk, unit_vector_grad

__all__ = ['TAME_TEMPERATURE', 'CosineAttention', 'GeluMlp', 'add_mask', 'attend', 'attention',
           'attention_inference', 'block_inference', 'block_train', 'channels_first',
           'flushed_softmax', 'head_major', 'mask_rows', 'mask_scales']

# elements of the (B, H, W, C) map that :func:`channels_first` transposes at a time: 1 MiB of
# float32, which stays in cache
_TRANSPOSE_BLOCK = 1 << 18


def channels_first(y: torch.Tensor, execution: Execution) -> torch.Tensor:
    """(B, H, W, C) -> contiguous (B, C, H, W); where ``execution.blocked_transpose``, a few
    rows of the map at a time.

    ``y.permute(0, 3, 1, 2).contiguous()`` writes the output in its order and reads ``y`` C
    elements apart, so on a large map each cache line of ``y`` is fetched again for each of the
    channels it holds; a block of rows stays in cache.
    """
    B, H, W, C = y.shape
    rows = max(1, _TRANSPOSE_BLOCK // max(1, W * C))
    if rows >= H or not execution.blocked_transpose:
        return y.permute(0, 3, 1, 2).contiguous()
    out = y.new_empty(B, C, H, W)
    for i in range(0, H, rows):
        out[:, :, i:i + rows] = y[:, i:i + rows].permute(0, 3, 1, 2)
    return out


def flushed_softmax(logits: torch.Tensor, dim: int = -1,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.softmax(logits, dim)`` (into ``out``, which may be ``logits``), with
    probabilities below the dtype's smallest normal number set to zero; the softmax of heads
    :func:`mask_scales` cannot rule such probabilities out for (see :func:`_flush`).

    The shift mask's ``MASK_VALUE`` makes probabilities of about e^-100 = 4e-44, subnormal in
    float32, which Intel cores multiply many times slower (BENCHMARKS.md), and
    ``torch.set_flush_denormal(True)`` sets only the calling thread's flag, not those of
    PyTorch's other threads. The change to the output is below the smallest normal number
    times |v|.
    """
    p = torch.softmax(logits, dim, out=out) if out is not None else logits.softmax(dim)
    return torch.threshold_(p, torch.finfo(p.dtype).tiny, 0.0)


# the largest temperature of a head whose attention the cpu path computes without subnormal
# probabilities (see :func:`mask_scales`)
TAME_TEMPERATURE = 31.5
# the shift mask's factor for such a head: MASK_VALUE -> -10^4, finite in float16
_HARD = 100.0


def mask_scales(temperature: torch.Tensor, compiling: bool = False) -> list[float]:
    """Per head, the factor the cpu path adds the shift mask times: 100 for a tame head, whose
    temperature is at most :data:`TAME_TEMPERATURE`, else 1 (all 1 when compiling, where the
    value would be read from a traced tensor).

    The reference's mask adds ``MASK_VALUE`` (-100) to the logits of keys from another region.
    Their probabilities, about e^-100, are subnormal in float32, and the softmax's exp computes
    them several times slower on Intel cores. Times 100 they are exactly 0. In a tame head
    they are at most e^(2 t + 16 - 100) of the row's largest (cosines in [-1, 1], the
    position bias in (0, 16)): for t <= 31.5 the N - 1 of them sum to less than 2^-24, so the
    result is the reference's to float32 rounding. And its other logits span at most
    2 t + 16 = 79, so every probability is at least e^-79 / N, a normal number: where every
    head is tame the softmax needs no flush (:func:`_flush`).
    """
    if compiling:
        return [1.0] * temperature.numel()
    return [_HARD if t <= TAME_TEMPERATURE else 1.0 for t in temperature.flatten().tolist()]


def add_mask(logits: torch.Tensor, mask: torch.Tensor | None, scales: list[float]) -> None:
    """``logits`` (n, heads, N, N) += the shift mask's rows (n, N, N) times each head's scale
    (:func:`mask_scales`), in place: one pass where the heads' scales agree."""
    if mask is None:
        return
    mask = mask.unsqueeze(1).to(logits.dtype)
    if len(set(scales)) == 1:
        logits.add_(mask, alpha=scales[0])
        return
    for head, scale in enumerate(scales):
        logits[:, head:head + 1].add_(mask, alpha=scale)


def _flush(dtype: torch.dtype, N: int, scales: list[float]) -> bool:
    """Whether a softmax over N logits in ``dtype`` of heads with these mask scales may give
    subnormal probabilities: a head is not tame, or the dtype's smallest normal number is
    above a tame head's smallest probability, e^-(2 t + 16) / N (float16's is)."""
    return min(scales) < _HARD or \
        torch.finfo(dtype).tiny * N > math.exp(-2 * TAME_TEMPERATURE - 16)


def head_major(qkv: torch.Tensor, temperature: torch.Tensor,
               num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a (B_, N, 3C) qkv projection into the unit q times ``temperature`` (heads, 1, 1),
    the unit k and v; each (B_, heads, N, d), contiguous. q and k in float32 at least (the
    logits' precision), v in the projection's dtype (P @ V runs in it, see :func:`attend`).
    One pass over a float32 projection; a bf16 one's q and k are first copied to float32 (the
    norms read the contiguous copy instead of converting strided bf16 twice)."""
    B_, N, _ = qkv.shape
    qkv = qkv.view(B_, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B_, heads, N, d)
    wide = torch.promote_types(qkv.dtype, torch.float32)
    if qkv.dtype == wide:
        out = torch.empty(qkv.shape, dtype=wide, device=qkv.device)
        scaled_unit_qk(qkv[:2], temperature, out=out[:2])
        out[2] = qkv[2]
        return out[0], out[1], out[2]
    qk = torch.empty(qkv[:2].shape, dtype=wide, device=qkv.device).copy_(qkv[:2])
    scaled_unit_qk(qk, temperature, out=qk)
    return qk[0], qk[1], qkv[2].contiguous()


def mask_rows(mask: torch.Tensor | None, i: int, j: int) -> torch.Tensor | None:
    """Shift-mask rows of windows i..j-1 of the batch (window w of image b is row b*nW + w)."""
    if mask is None:
        return None
    nW = mask.shape[0]
    if i // nW == (j - 1) // nW:  # all in one image: a view
        return mask[i % nW:(j - 1) % nW + 1]
    return mask.index_select(0, torch.arange(i, j, device=mask.device) % nW)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos_bias: torch.Tensor,
           mask: torch.Tensor | None, chunk_logits: int,
           scales: list[float] | None = None) -> torch.Tensor:
    """``softmax(q k^T + pos_bias + mask) v`` in each window and head, ``chunk_logits``
    logits at a time.

    Args:
        q, k: (B_, heads, N, d), contiguous, the temperature already in q. ``q`` is
            overwritten (it is used as scratch space).
        v: (B_, heads, N, d), contiguous, in q's dtype or a narrower one: the logits and the
            softmax run in q's, P @ V in v's (bf16 inference: the probabilities rounded to
            bf16 once, where the product would be rounded to bf16 anyway for the output
            projection).
        pos_bias: (heads, N, N) position bias.
        mask: (num_windows, N, N) shift mask, or None; window w of image b is row b*nW + w.
        scales: each head's factor of the mask (:func:`mask_scales`); None: 1.

    Returns:
        (B_, N, heads * d) in v's dtype
    """
    B_, h, N, d = q.shape
    out = v.new_empty(B_, N, h, d)
    step = max(1, chunk_logits // (h * N * N))
    rows = min(step, B_) * h
    buffer = q.new_empty(rows, N, N)  # one logits buffer, updated in place
    narrow = v.dtype != q.dtype
    scales = [1.0] * h if scales is None else scales
    softmax = flushed_softmax if _flush(q.dtype, N, scales) else torch.softmax
    if narrow:  # the probabilities and the product in v's dtype
        probs, product = v.new_empty(rows, N, N), v.new_empty(rows, N, d)
    for i in range(0, B_, step):
        j = min(i + step, B_)
        n = (j - i) * h
        logits = attention_logits(q[i:j], k[i:j], pos_bias, None, out=buffer[:n])
        add_mask(logits, mask_rows(mask, i, j), scales)
        p = softmax(logits.view(-1, N, N), -1, out=buffer[:n])
        if narrow:
            p = probs[:n].copy_(p)
        # else q[i:j] is not read again: it takes the (n * heads, N, d) product
        o = torch.bmm(p, v[i:j].view(-1, N, d),
                      out=product[:n] if narrow else q[i:j].view(-1, N, d))
        out[i:j] = o.view(j - i, h, N, d).transpose(1, 2)
    return out.view(B_, N, h * d)


def window_chunks(num: int, heads: int, N: int, execution: Execution) -> list[tuple[int, int]]:
    """Window ranges [i, j) of at most ``train_chunk_tokens`` tokens / ``chunk_logits``
    logits."""
    step = max(1, min(execution.train_chunk_tokens // N,
                      execution.chunk_logits // (heads * N * N)))
    return [(i, min(i + step, num)) for i in range(0, num, step)]


class CosineAttention(torch.autograd.Function):
    """qkv projection + scaled cosine attention, with a backward pass that saves little.

    Forward, a few windows at a time: ``qkv = x W^T + b``; q and k normalised into a head-major
    buffer (3, B_, heads, N, d) that every later matmul reads without copies; :func:`attend`
    with the temperature applied to q. Saved for backward: x, that buffer, the inverse norms and
    the output; not the (windows, heads, N, N) attention, which backward recomputes chunk by
    chunk. Gradients reach x, W, b, the temperature and the position bias (hence the CPB MLP);
    the shift mask is a constant.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                temperature: torch.Tensor, pos_bias: torch.Tensor, mask: torch.Tensor | None,
                num_heads: int, execution: Execution) -> torch.Tensor:
        B_, N, C = x.shape
        h = num_heads
        qkv = out = inv = t = None
        pos_bias = pos_bias.detach()
        scales = mask_scales(temperature, execution.compiling)
        inner = replace(execution, grad=False)  # nothing inside an autograd function records
        for i, j in window_chunks(B_, h, N, execution):
            # (n, N, 3C) -> (3, n, heads, N, d), a view
            raw = linear(x[i:j], weight, qkv_bias, inner).view(j - i, N, 3, h, -1)
            raw = raw.permute(2, 0, 3, 1, 4)
            if qkv is None:
                qkv = raw.new_empty(3, B_, *raw.shape[2:])
                # float32: the inverse norms of small vectors overflow fp16
                inv = torch.empty(2, B_, h, N, 1, device=raw.device,
                                  dtype=torch.promote_types(raw.dtype, torch.float32))
                out = raw.new_empty(B_, N, C)
                t = temperature.detach().to(raw.dtype).view(1, -1, 1, 1)
            inv[:, i:j] = inverse_norm(raw[:2])
            torch.mul(raw[:2], inv[:, i:j], out=qkv[:2, i:j])  # unit q and k
            qkv[2, i:j] = raw[2]
            # the temperature goes into a copy of q: qkv keeps the unit vectors for backward
            out[i:j] = attend(qkv[0, i:j] * t, qkv[1, i:j], qkv[2, i:j], pos_bias,
                              mask_rows(mask, i, j), execution.chunk_logits, scales)
        ctx.save_for_backward(x, weight, qkv, inv, temperature, pos_bias, mask, out)
        ctx.has_bias = qkv_bias is not None
        ctx.execution, ctx.mask_scales = execution, scales
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight, qkv, inv, temperature, pos_bias, mask, out = ctx.saved_tensors
        _, B_, h, N, d = qkv.shape
        dt = qkv.dtype
        need = ctx.needs_input_grad
        g = grad_out.to(dt).view(B_, N, h, d)
        w = weight.to(dt)
        t = temperature.to(dt).view(1, h, 1, 1)
        pos_bias_dt = pos_bias.to(dt)
        dx = torch.empty(x.shape, dtype=dt, device=x.device) if need[0] else None
        dw = torch.zeros(weight.shape, dtype=dt, device=x.device) if need[1] else None
        db = torch.zeros(weight.shape[0], dtype=dt, device=x.device) \
            if need[2] and ctx.has_bias else None
        dpos_bias = torch.zeros(pos_bias.shape, dtype=torch.float32, device=pos_bias.device)
        dtemperature = torch.zeros(h, dtype=torch.float32, device=pos_bias.device)
        softmax = flushed_softmax if _flush(dt, N, ctx.mask_scales) else torch.softmax
        for i, j in window_chunks(B_, h, N, ctx.execution):
            qh, kh, v = qkv[:, i:j]  # each (n, heads, N, d), contiguous
            gc = g[i:j].transpose(1, 2).contiguous()  # (n, heads, N, d)
            # softmax backward needs rowsum(dO * O) per query: (n, heads, N, 1)
            rowdot = (g[i:j] * out[i:j].view(-1, N, h, d)).sum(-1)
            rowdot = rowdot.transpose(1, 2).unsqueeze(-1)
            qs = qh * t
            logits = attention_logits(qs, kh, pos_bias_dt, None)
            add_mask(logits, mask_rows(mask, i, j), ctx.mask_scales)
            p = softmax(logits, -1)
            dqkv = torch.empty(j - i, N, 3, h, d, dtype=dt, device=qkv.device)
            dqkv[:, :, 2] = (p.transpose(-2, -1) @ gc).transpose(1, 2)
            # softmax backward: dS = P * (dP - rowsum(dO * O))
            dlogits = (gc @ v.transpose(-2, -1)).sub_(rowdot).mul_(p)
            del p
            dpos_bias += dlogits.sum(0, dtype=torch.float32)
            dqs = dlogits @ kh  # d(loss)/d(t * q_unit)
            dk = dlogits.transpose(-2, -1) @ qs  # d(loss)/d(k_unit)
            # through the unit vectors (reference.unit_vector_grad); q was scaled by t after
            # normalising, and (q_unit . dqs) summed is also the temperature's gradient
            dot = (qh * dqs).sum(-1, keepdim=True)
            dtemperature += dot.sum((0, 2, 3), dtype=torch.float32)
            dqkv[:, :, 0] = unit_vector_grad(qh, dqs, t * inv[0, i:j], dot).transpose(1, 2)
            dqkv[:, :, 1] = unit_vector_grad(kh, dk, inv[1, i:j]).transpose(1, 2)
            dqkv = dqkv.view((j - i) * N, -1)  # (n*N, 3C)
            if dx is not None:
                dx[i:j] = backward_gemm(dqkv, w.t(), ctx.execution).view(j - i, N, -1)
            if dw is not None:
                dw += backward_gemm(dqkv.t(), x[i:j].reshape((j - i) * N, -1).to(dt).t(),
                                    ctx.execution)
            if db is not None:
                db += dqkv.sum(0)
        return dx, dw, db, dtemperature, dpos_bias, None, None, None


def _add(total: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    """``total + part`` in place, or ``part`` where there is no total yet."""
    return part if total is None else total.add_(part)


def _by_rows(M: int, rows: int, fn: Callable[[int], torch.Tensor | None]) -> torch.Tensor | None:
    """``fn(r)`` for r = 0, rows, 2 rows, ... < M, its results stacked along the rows: one
    chunk's result itself, several written into one buffer (the batched path runs one chunk,
    so no copy). None where ``fn`` returns None."""
    if rows >= M:
        return fn(0)
    out = None
    for r in range(0, M, rows):
        part = fn(r)
        if part is None:
            continue
        if out is None:
            out = part.new_empty((M,) + part.shape[1:])
        out[r:r + rows] = part
    return out


class GeluMlp(torch.autograd.Function):
    """``fc2(gelu(fc1(x)))`` on (M, C) rows that saves x and the fc1 output only; with
    ``recompute``, x only (``with_cp='mlp'``): backward recomputes the fc1 output too.

    Returns the output and ``x`` again (autograd makes it a view of ``x``): the residual adds
    the output to that, so backward receives the residual's gradient and adds it into x's in
    fc1's backward GEMM (one ``addmm`` where autograd would add the two, a pass over the
    block's activations and on a GPU a launch).

    The GELU output, its gradient and the fc1-output gradient exist for ``mlp_chunk_rows``
    rows at a time (all at once where it is None, as on the batched path); the usual graph
    keeps the GELU output too and builds each gradient whole, every one 4x the block's width.
    Backward recomputes the GELU. Under autocast x is kept in the autocast dtype: the copy
    fc1 multiplies anyway, half the bytes of the float32 residual stream.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None,
                w2: torch.Tensor, b2: torch.Tensor | None, execution: Execution,
                recompute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        inner = replace(execution, grad=False)  # nothing inside an autograd function records
        residual = x
        if execution.amp is not None:
            x = x.to(execution.amp)
        hidden = linear(x, w1, b1, inner)
        dt = hidden.dtype  # bf16 under autocast
        w2c = w2.to(dt)
        b2c = b2.to(dt) if b2 is not None else None
        rows = execution.mlp_chunk_rows or x.shape[0]  # None: all rows at once
        y = _by_rows(x.shape[0], rows, lambda r: linear(F.gelu(hidden[r:r + rows]), w2c, b2c,
                                                        inner))
        ctx.save_for_backward(x, w1, w2, b1 if recompute else None,
                              None if recompute else hidden)
        ctx.has_bias = b1 is not None, b2 is not None
        ctx.rows, ctx.dtype, ctx.inner = rows, dt, inner
        return y, residual

    @staticmethod
    def backward(ctx, grad: torch.Tensor, residual: torch.Tensor | None):
        x, w1, w2, b1, hidden = ctx.saved_tensors
        dt = ctx.dtype
        need = ctx.needs_input_grad
        rows = ctx.rows
        grad, w1c, w2c = grad.to(dt), w1.to(dt), w2.to(dt)
        b1c = b1.to(dt) if b1 is not None else None
        dw1 = db1 = dw2 = None  # sums over the chunks (one chunk: no sum at all)
        db2 = grad.sum(0) if need[4] and ctx.has_bias[1] else None

        def chunk(r: int) -> torch.Tensor | None:
            """Adds chunk r's weight gradients; returns its dx rows."""
            nonlocal dw1, db1, dw2
            g, xr = grad[r:r + rows], x[r:r + rows].to(dt)
            # the forward's fc1 product again: autocast's casts made explicit, as backward
            # may run outside autocast
            h = hidden[r:r + rows] if hidden is not None else linear(xr, w1c, b1c, ctx.inner)
            if need[3]:
                dw2 = _add(dw2, backward_gemm(g.t(), F.gelu(h).t(), ctx.inner))
            dh = torch.ops.aten.gelu_backward(backward_gemm(g, w2c.t(), ctx.inner), h)
            if need[1]:
                dw1 = _add(dw1, backward_gemm(dh.t(), xr.t(), ctx.inner))
            if need[2] and ctx.has_bias[0]:
                db1 = _add(db1, dh.sum(0))
            return backward_gemm(dh, w1c.t(), ctx.inner,
                                 None if residual is None else residual[r:r + rows]) \
                if need[0] else None
        dx = _by_rows(x.shape[0], rows, chunk)
        return dx, dw1, db1, dw2, db2, None, None


# ---------------------------------------------------------------- the attention, as registered
def attention(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
              temperature: torch.Tensor, pos_bias: torch.Tensor, mask: torch.Tensor | None,
              num_heads: int, window: int,
              execution: Execution) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention backend ``'cpu'`` (training): :class:`CosineAttention` of the (B, L, C)
    tokens window by window; returns (B * nW, N, C) and ``x`` (the residual's input)."""
    return CosineAttention.apply(x.reshape(-1, window * window, x.shape[-1]), weight, qkv_bias,
                                 temperature.view(-1), pos_bias, mask, num_heads, execution), x


def attention_inference(x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                        temperature: torch.Tensor, pos_bias: torch.Tensor,
                        mask: torch.Tensor | None, num_heads: int, window: int,
                        execution: Execution) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention backend ``'cpu inference'``: the qkv GEMM, :func:`head_major` and
    :func:`attend`; returns (B * nW, N, C) and ``x``. Under bf16 autocast only the GEMMs run
    in bf16: the temperature (up to 100) times bf16 logits would put errors of tenths into
    the softmax. The output is in the projection's dtype (bf16 under autocast)."""
    qkv = linear(x.reshape(-1, window * window, x.shape[-1]), weight, qkv_bias, execution)
    with torch.autocast('cpu', enabled=False) if execution.bf16_inference else nullcontext():
        return attend(*head_major(qkv, temperature, num_heads), pos_bias, mask,
                      execution.chunk_logits,
                      mask_scales(temperature, execution.compiling)), x


# ---------------------------------------------------------------- whole blocks
def block_inference(x: torch.Tensor, w: BlockWeights, window: int, mask: torch.Tensor | None,
                    real: torch.Tensor | None, execution: Execution) -> torch.Tensor:
    """A block without autograd, in place on (B, L, C) tokens in window order, returned.

    ``execution.chunk_tokens`` at a time (whole windows of one image; one image at a time when
    compiling), so a chunk's intermediates stay in cache. ``real``: (H*W,) the ascending
    positions that hold map tokens, or None (no padding): the MLP runs on those only, since
    the stage zeroes the padding before the next block anyway.
    """
    B, L, C = x.shape
    N = window * window
    per = L // N if execution.compiling else max(1, execution.chunk_tokens // N)
    for first in range(0, L // N, per):
        start, end = first * N, min(first + per, L // N) * N
        rows = real  # the chunk's map tokens; None: all of them
        if real is not None and not execution.compiling:
            i, j = torch.searchsorted(real, torch.tensor([start, end])).tolist()
            rows = real[i:j] - start if j - i < end - start else None
        chunk_mask = None if mask is None else mask[first:first + per]
        for b in range(B):
            t = x[b:b + 1, start:end]  # (1, l, C), a view: updated in place
            y, _ = attention_inference(t, w.qkv_weight, w.qkv_bias, w.temperature, w.pos_bias,
                                       chunk_mask, w.num_heads, window, execution)
            y = linear(y.reshape(t.shape), w.proj_weight, w.proj_bias, execution)
            t.add_(drop_path(w.norm1(y), w.drop_path))
            tokens = t if rows is None else select_tokens(t, rows)
            y = linear(linear(tokens, w.fc1_weight, w.fc1_bias, execution, gelu=True),
                       w.fc2_weight, w.fc2_bias, execution)
            tokens.add_(drop_path(w.norm2(y), w.drop_path))
            if rows is not None:
                t.index_copy_(1, rows, tokens)
            if w.norm3 is not None:
                t.copy_(w.norm3(t))
    return x


def block_train(x: torch.Tensor, w: BlockWeights, window: int, mask: torch.Tensor | None,
                real: torch.Tensor | None, execution: Execution) -> torch.Tensor:
    """A block under autograd on (B, L, C) tokens: :class:`CosineAttention` and
    :class:`GeluMlp`, whose residual output lets backward add the residual's gradient into
    fc1's GEMM. ``real`` is not used (the padding is zeroed by the stage)."""
    B, L, C = x.shape
    y = CosineAttention.apply(x.reshape(-1, window * window, C), w.qkv_weight, w.qkv_bias,
                              w.temperature.view(-1), w.pos_bias, mask, w.num_heads, execution)
    y = linear(y.reshape(x.shape), w.proj_weight, w.proj_bias, execution)
    x = x + drop_path(w.norm1(y), w.drop_path)
    y, x = GeluMlp.apply(x.reshape(-1, C), w.fc1_weight, w.fc1_bias, w.fc2_weight, w.fc2_bias,
                         execution, w.recompute_mlp)
    x = x.view(B, L, C) + drop_path(w.norm2(y.view(B, L, C)), w.drop_path)
    return x if w.norm3 is None else w.norm3(x)
