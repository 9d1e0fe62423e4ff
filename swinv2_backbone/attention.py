"""SwinV2 window attention: scaled cosine attention with a continuous position bias (CPB)."""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .compat import autocast_available, is_compiling
from .linear import bf16_inference, linear
from .ops import relative_coords_table, relative_position_index

__all__ = ['CosineAttention', 'WindowAttentionV2', 'attend', 'head_major', 'inverse_norm']

# Upper bound of the learned temperature: exp(logit_scale) <= 100, as in the paper.
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)


class WindowAttentionV2(nn.Module):
    """Multi-head self-attention inside windows, SwinV2 style.

    Attention logits are cosine similarities times a per-head learned scale (clamped at
    log(100)) plus ``16 * sigmoid(CPB)``, where CPB is a 2 -> 512 -> heads MLP applied to
    log-spaced relative coordinates. The coordinate table and the relative index depend only on
    the window, so they are non-persistent buffers rebuilt by :meth:`set_window_size`; a
    checkpoint never carries them.

    Args:
        dim: channels.
        num_heads: attention heads.
        window_size: window side the buffers are built for.
        pretrained_window_size: window the CPB was pretrained at (0 = none): coordinates are
            normalised by it so the learned MLP transfers to larger windows.
        qkv_bias: learn q and v biases (SwinV2 has no k bias).
        attn_drop, proj_drop: dropout rates.
        cpb_hidden: hidden width of the CPB MLP.
        fused: the fast path instead of the reference code's explicit ops (``F.normalize``,
            matmul, softmax, matmul). q and k are normalised in one pass with the temperature
            folded into q, and :func:`attend` runs the attention: bmm-softmax-bmm into reused
            buffers on CPU, ``F.scaled_dot_product_attention`` elsewhere. Both paths give the
            same result. Under autograd the fast path is :class:`CosineAttention` (its own
            lean backward); with attention dropout active in training the explicit path is
            used.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int,
                 pretrained_window_size: int = 0, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, cpb_hidden: int = 512,
                 fused: bool = True) -> None:
        super().__init__()
        self.fused = fused
        self._bias_cache: tuple[tuple, torch.Tensor] | None = None
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.dim = dim
        self.num_heads = num_heads
        self.pretrained_window_size = pretrained_window_size
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, cpb_hidden, bias=True), nn.ReLU(inplace=True),
            nn.Linear(cpb_hidden, num_heads, bias=False))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.set_window_size(window_size)

    def set_window_size(self, window_size: int) -> None:
        """Rebuild the window-dependent buffers; learned weights are untouched."""
        device = self.qkv.weight.device
        self.window_size = window_size
        self.register_buffer(
            'relative_coords_table',
            relative_coords_table(window_size, self.pretrained_window_size).to(device),
            persistent=False)
        self.register_buffer('relative_position_index',
                             relative_position_index(window_size).to(device), persistent=False)

    def position_bias(self, window: int) -> torch.Tensor:
        """``16 * sigmoid(CPB)`` for a window: (num_heads, window*window, window*window).

        Without autograd in eval mode the result is cached; the key holds the CPB weights'
        version counters, so loading other weights invalidates it.
        """
        key = None
        params = list(self.cpb_mlp.parameters())
        # not cached in a compiled graph (version counters are not traceable), nor for weights
        # made under inference_mode (they have no version counter)
        if not self.training and not torch.is_grad_enabled() and \
                not is_compiling() and not any(p.is_inference() for p in params):
            key = (window, self.relative_coords_table.device,
                   *(p._version for p in params))
            if self._bias_cache is not None and self._bias_cache[0] == key:
                return self._bias_cache[1]
        # float32 under autocast too: bf16 rounds 16 * sigmoid by up to 0.03
        device = self.relative_coords_table.device.type
        with torch.autocast(device, enabled=False) if autocast_available(device) \
                else nullcontext():
            bias = self._position_bias(window)
        if key is not None:
            self._bias_cache = (key, bias)
        return bias

    def _position_bias(self, window: int) -> torch.Tensor:
        if window == self.window_size:
            table, index = self.relative_coords_table, self.relative_position_index
        else:  # the map is smaller than the window, which shrinks to it (see effective_window)
            device = self.relative_coords_table.device
            table = relative_coords_table(window, self.pretrained_window_size).to(device)
            index = relative_position_index(window).to(device)
        bias = self.cpb_mlp(table).view(-1, self.num_heads)  # ((2w-1)^2, heads)
        N = window * window
        # (N*N, heads) -> (N, N, heads) -> (heads, N, N)
        bias = bias[index.view(-1)].view(N, N, self.num_heads).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, window: int,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within windows.

        Args:
            x: (num_windows*B, N, C) tokens, N = window*window.
            window: side of the windows in ``x``.
            mask: (num_windows, N, N) additive shift mask, or None.

        Returns:
            (num_windows*B, N, C)
        """
        B_, N, C = x.shape
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        scale = torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp()  # (heads, 1, 1)
        bias = self.position_bias(window)  # (heads, N, N)
        dropout = self.training and self.attn_drop.p > 0
        if self.fused and not dropout:
            if torch.is_grad_enabled():
                x = CosineAttention.apply(x, self.qkv.weight, qkv_bias, scale.view(-1), bias,
                                          mask, self.num_heads)
            else:  # nothing to save for backward
                bf16 = bf16_inference(x)
                qkv = linear(x, self.qkv.weight, qkv_bias)
                # under bf16 autocast only the GEMMs run in bf16: the temperature (up to 100)
                # times bf16 logits would put errors of tenths into the softmax
                with torch.autocast('cpu', enabled=False) if bf16 else nullcontext():
                    x = attend(*head_major(qkv, scale, self.num_heads), bias, mask)
            return self.proj_drop(linear(x, self.proj.weight, self.proj.bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        # (B_, N, 3C) -> (3, B_, heads, N, C/heads)
        qkv = qkv.reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * scale + bias.unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            # (B, nW, heads, N, N) so each window gets its own mask
            attn = attn.view(-1, nW, self.num_heads, N, N) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)  # (B_, heads, N, d) -> (B_, N, C)
        return self.proj_drop(self.proj(x))


# F.normalize's epsilon: a norm below it is replaced by it
NORM_EPS = 1e-12
# The autograd functions below work a few windows at a time: at most this many tokens, and at
# most this many (windows * heads * N * N) attention logits (``attend`` too). Nothing of the
# size of a whole stage is allocated besides what is saved for backward.
TRAIN_CHUNK_TOKENS = 4096
CHUNK_LOGITS = 1 << 20


def inverse_norm(t: torch.Tensor) -> torch.Tensor:
    """``1 / max(|t|, NORM_EPS)`` over the last dim, kept: what ``F.normalize`` divides by.
    Computed in float32 at least (bf16 in, float32 out)."""
    dtype = torch.promote_types(t.dtype, torch.float32)
    return torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=dtype).clamp_min_(
        NORM_EPS).reciprocal_()


def head_major(qkv: torch.Tensor, scale: torch.Tensor,
               num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a (B_, N, 3C) qkv projection into the unit q times the temperature ``scale``
    (heads, 1, 1), the unit k (as ``F.normalize``) and v; each (B_, heads, N, d), contiguous,
    in float32 at least. One pass over qkv."""
    B_, N, _ = qkv.shape
    qkv = qkv.view(B_, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B_, heads, N, d)
    out = torch.empty(qkv.shape, dtype=torch.promote_types(qkv.dtype, torch.float32),
                      device=qkv.device)
    factor = inverse_norm(qkv[:2])  # (2, B_, heads, N, 1)
    factor[0].mul_(scale)
    torch.mul(qkv[:2], factor, out=out[:2])
    out[2] = qkv[2]
    return out[0], out[1], out[2]


def _mask_rows(mask: torch.Tensor | None, i: int, j: int) -> torch.Tensor | None:
    """Shift-mask rows of windows i..j-1 of the batch (window w of image b is row b*nW + w)."""
    if mask is None:
        return None
    nW = mask.shape[0]
    if i // nW == (j - 1) // nW:  # all in one image: a view
        return mask[i % nW:(j - 1) % nW + 1]
    return mask.index_select(0, torch.arange(i, j, device=mask.device) % nW)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
           mask: torch.Tensor | None, sdpa: bool | None = None) -> torch.Tensor:
    """``softmax(q k^T + bias + mask) v`` in each window and head.

    Args:
        q, k, v: (B_, heads, N, d), contiguous, the temperature already in q. Without SDPA,
            ``q`` is overwritten (it is used as scratch space).
        bias: (heads, N, N) position bias.
        mask: (num_windows, N, N) shift mask, or None; window w of image b is row b*nW + w.
        sdpa: use ``F.scaled_dot_product_attention``; None: everywhere but on CPU.

    Returns:
        (B_, N, heads * d)

    On CPU this is bmm, softmax, bmm, ``CHUNK_LOGITS`` logits at a time: for 64-token
    windows 1.5-2.4x faster than ``F.scaled_dot_product_attention``'s flash kernel, and equal
    to it within float rounding. Elsewhere (GPUs) it is that function.
    """
    B_, h, N, d = q.shape
    if sdpa is None:
        sdpa = q.device.type != 'cpu'
    if sdpa:
        attn_mask = bias.unsqueeze(0) if mask is None else \
            bias + _mask_rows(mask, 0, B_).unsqueeze(1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask.to(q.dtype).expand(B_, h, N, N), scale=1.0)
        return out.transpose(1, 2).reshape(B_, N, h * d)
    out = q.new_empty(B_, N, h, d)
    step = max(1, CHUNK_LOGITS // (h * N * N))
    buffer = q.new_empty(min(step, B_) * h, N, N)  # one logits buffer, updated in place
    for i in range(0, B_, step):
        j = min(i + step, B_)
        logits = buffer[:(j - i) * h]
        torch.bmm(q[i:j].view(-1, N, d), k[i:j].view(-1, N, d).transpose(1, 2), out=logits)
        logits.view(j - i, h, N, N).add_(bias)
        if mask is not None:
            logits.view(j - i, h, N, N).add_(_mask_rows(mask, i, j).unsqueeze(1))
        torch.softmax(logits, -1, out=logits)
        # q[i:j] is not read again: it takes the (n * heads, N, d) product
        o = torch.bmm(logits, v[i:j].view(-1, N, d), out=q[i:j].view(-1, N, d))
        out[i:j] = o.view(j - i, h, N, d).transpose(1, 2)
    return out.view(B_, N, h * d)


def _window_chunks(num: int, heads: int, N: int):
    """Window ranges [i, j) of at most TRAIN_CHUNK_TOKENS tokens / CHUNK_LOGITS logits."""
    step = max(1, min(TRAIN_CHUNK_TOKENS // N, CHUNK_LOGITS // (heads * N * N)))
    return [(i, min(i + step, num)) for i in range(0, num, step)]


class CosineAttention(torch.autograd.Function):
    """qkv projection + scaled cosine attention, with a backward pass that saves little.

    Forward, a few windows at a time: ``qkv = x W^T + b``; q and k normalised into a head-major
    buffer (3, B_, heads, N, d) that every later matmul reads without copies; ``attend`` with
    the temperature applied to q. Saved for backward: x, that buffer, the inverse norms and the
    output; not the (windows, heads, N, N) attention, which backward recomputes chunk by chunk.
    Gradients reach x, W, b, the temperature and the position bias (hence the CPB MLP); the
    shift mask is a constant.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                scale: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
                num_heads: int) -> torch.Tensor:
        B_, N, C = x.shape
        h = num_heads
        qkv = out = inv = s = None
        # detached: on GPUs, SDPA keeps its fused kernels only for a mask without gradient
        bias = bias.detach()
        for i, j in _window_chunks(B_, h, N):
            # (n, N, 3C) -> (3, n, heads, N, d), a view
            raw = linear(x[i:j], weight, qkv_bias).view(j - i, N, 3, h, -1)
            raw = raw.permute(2, 0, 3, 1, 4)
            if qkv is None:
                qkv = raw.new_empty(3, B_, *raw.shape[2:])
                # float32: 1 / NORM_EPS overflows fp16, and 0 * inf would put NaN into the
                # unit k of zero padding (k has no bias)
                inv = torch.empty(2, B_, h, N, 1, device=raw.device,
                                  dtype=torch.promote_types(raw.dtype, torch.float32))
                out = raw.new_empty(B_, N, C)
                s = scale.detach().to(raw.dtype).view(1, -1, 1, 1)
            inv[:, i:j] = inverse_norm(raw[:2])
            torch.mul(raw[:2], inv[:, i:j], out=qkv[:2, i:j])  # unit q and k
            qkv[2, i:j] = raw[2]
            # the temperature goes into a copy of q: qkv keeps the unit vectors for backward
            out[i:j] = attend(qkv[0, i:j] * s, qkv[1, i:j], qkv[2, i:j], bias,
                              _mask_rows(mask, i, j))
        ctx.save_for_backward(x, weight, qkv, inv, scale, bias, mask, out)
        ctx.has_bias = qkv_bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight, qkv, inv, scale, bias, mask, out = ctx.saved_tensors
        # a vector whose norm was clamped at NORM_EPS (the zero padding) gets no gradient,
        # where F.normalize's is dy / NORM_EPS: that overflows fp16, and it only ever meets
        # zero inputs (its share of the weight gradient is 0) and padding (whose gradient the
        # stage discards)
        inv = inv.masked_fill(inv > 0.5 / NORM_EPS, 0)
        _, B_, h, N, d = qkv.shape
        dt = qkv.dtype
        need = ctx.needs_input_grad
        g = grad_out.to(dt).view(B_, N, h, d)
        w = weight.to(dt)
        s = scale.to(dt).view(1, h, 1, 1)
        bias_dt = bias.to(dt)
        dx = torch.empty(x.shape, dtype=dt, device=x.device) if need[0] else None
        dw = torch.zeros(weight.shape, dtype=dt, device=x.device) if need[1] else None
        db = torch.zeros(weight.shape[0], dtype=dt, device=x.device) \
            if need[2] and ctx.has_bias else None
        dbias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        dscale = torch.zeros(h, dtype=torch.float32, device=bias.device)
        for i, j in _window_chunks(B_, h, N):
            qh, kh, v = qkv[:, i:j]  # each (n, heads, N, d), contiguous
            gc = g[i:j].transpose(1, 2).contiguous()  # (n, heads, N, d)
            # softmax backward needs rowsum(dO * O) per query: (n, heads, N, 1)
            rowdot = (g[i:j] * out[i:j].view(-1, N, h, d)).sum(-1)
            rowdot = rowdot.transpose(1, 2).unsqueeze(-1)
            qs = qh * s
            p = qs @ kh.transpose(-2, -1)  # (n, heads, N, N)
            p += bias_dt
            if mask is not None:
                p += _mask_rows(mask, i, j).unsqueeze(1).to(dt)
            p = p.softmax(-1)
            dqkv = torch.empty(j - i, N, 3, h, d, dtype=dt, device=qkv.device)
            dqkv[:, :, 2] = (p.transpose(-2, -1) @ gc).transpose(1, 2)
            # softmax backward: dS = P * (dP - rowsum(dO * O))
            dlogits = (gc @ v.transpose(-2, -1)).sub_(rowdot).mul_(p)
            del p
            dbias += dlogits.sum(0, dtype=torch.float32)
            dqs = dlogits @ kh  # d(loss)/d(s * q_unit)
            dk = dlogits.transpose(-2, -1) @ qs  # d(loss)/d(k_unit)
            # through y = x / |x|: dx = (dy - y (y . dy)) / |x|; for q, dy = s * dqs, and
            # (q_unit . dqs) summed is also the temperature's gradient
            dot = (qh * dqs).sum(-1, keepdim=True)
            dscale += dot.sum((0, 2, 3), dtype=torch.float32)
            dqkv[:, :, 0] = ((dqs - qh * dot) * (s * inv[0, i:j])).transpose(1, 2)
            dot = (kh * dk).sum(-1, keepdim=True)
            dqkv[:, :, 1] = ((dk - kh * dot) * inv[1, i:j]).transpose(1, 2)
            dqkv = dqkv.view((j - i) * N, -1)  # (n*N, 3C)
            if dx is not None:
                dx[i:j] = linear(dqkv, w.t()).view(j - i, N, -1)
            if dw is not None:
                dw += linear(dqkv.t(), x[i:j].reshape((j - i) * N, -1).to(dt).t())
            if db is not None:
                db += dqkv.sum(0)
        return dx, dw, db, dscale, dbias, None, None
