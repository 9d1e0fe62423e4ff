"""SwinV2 building blocks: patch embedding, res-post-norm block, patch merging, stage.

Patch embedding, merging and stages take and return channels-last maps (B, H, W, C). Inside a
stage the tokens stay in window order (see :func:`window_layout`): blocks take (B, L, C).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .attention import WindowAttentionV2
from .compat import is_compiling
from .linear import bf16_inference, linear
from .ops import effective_window, pad_to_multiple, shift_attn_mask, window_layout

__all__ = ['DropPath', 'GeluMlp', 'Mlp', 'PatchEmbed', 'PatchMerging', 'SwinV2Block',
           'SwinV2Stage']

# Without autograd a block runs this many tokens at a time (whole windows), updating its input
# in place: the chunk's intermediates stay in cache and no large buffer is allocated.
INFERENCE_CHUNK_TOKENS = 2048
# Shapes whose masks and layouts a stage keeps (multi-scale training sees many shapes).
SHAPE_CACHE_SIZE = 8


def _cached(cache: OrderedDict, key: tuple, build: Callable[[], object]):
    """``cache[key]``, built on a miss; the least recently used entries beyond
    ``SHAPE_CACHE_SIZE`` are dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    # plain tensors even when first built under inference_mode, so training can reuse them
    with torch.inference_mode(False), torch.no_grad():
        cache[key] = value = build()
    while len(cache) > SHAPE_CACHE_SIZE:
        cache.popitem(last=False)
    return value


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability
    ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``; the identity in eval.

    The same draws as timm's ``DropPath``, which the official SwinV2 code uses (tested).
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob!r}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        # one draw per sample, broadcast over the rest: (B, 1, ..., 1)
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection followed by LayerNorm.

    The image is zero-padded at the bottom and right to a multiple of the patch size, so any
    H, W >= 1 patch gives a (B, ceil(H/p), ceil(W/p), C) map.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, ceil(H/p), ceil(W/p), C)."""
        x = pad_to_multiple(x.permute(0, 2, 3, 1), self.patch_size).permute(0, 3, 1, 2)
        # float32 in bf16 inference too: the convolution is cheap, and in bf16 it was the
        # largest part of stage 1's error (max 0.049 -> 0.037 of the features' std at 512^2)
        if bf16_inference(x):
            with torch.autocast('cpu', enabled=False):
                x = self.proj(x.to(self.proj.weight.dtype))
        else:
            x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1))  # (B, C, h, w) -> (B, h, w, C)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout.

    Without dropout, training goes through :class:`GeluMlp` (saves only the fc1 output) and
    inference through :func:`linear` (on oneDNN: bias and GELU fused into the fc1 GEMM).
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop1.p > 0:
            return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
        if torch.is_grad_enabled():
            y = GeluMlp.apply(x.reshape(-1, x.shape[-1]), self.fc1.weight, self.fc1.bias,
                              self.fc2.weight, self.fc2.bias)
            return y.view(x.shape)
        return linear(linear(x, self.fc1.weight, self.fc1.bias, gelu=True), self.fc2.weight,
                      self.fc2.bias)


# GeluMlp works on this many rows at a time (see TRAIN_CHUNK_TOKENS in attention.py)
MLP_CHUNK_ROWS = 4096


class GeluMlp(torch.autograd.Function):
    """``fc2(gelu(fc1(x)))`` on (M, C) rows that saves x and the fc1 output only.

    The GELU output, its gradient and the fc1-output gradient exist for ``MLP_CHUNK_ROWS``
    rows at a time (the usual graph keeps the GELU output too and builds each gradient whole,
    every one 4x the block's width); backward recomputes the GELU.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None,
                w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor:
        hidden = linear(x, w1, b1)
        dt = hidden.dtype  # bf16 under autocast
        w2c = w2.to(dt)
        b2c = b2.to(dt) if b2 is not None else None
        y = hidden.new_empty(x.shape[0], w2.shape[0])
        for r in range(0, x.shape[0], MLP_CHUNK_ROWS):
            y[r:r + MLP_CHUNK_ROWS] = linear(F.gelu(hidden[r:r + MLP_CHUNK_ROWS]), w2c, b2c)
        ctx.save_for_backward(x, w1, w2, hidden)
        ctx.has_bias = b1 is not None, b2 is not None
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w1, w2, hidden = ctx.saved_tensors
        dt = hidden.dtype
        need = ctx.needs_input_grad
        grad, w1c, w2c = grad.to(dt), w1.to(dt), w2.to(dt)
        dx = torch.empty(x.shape, dtype=dt, device=x.device) if need[0] else None
        dw1 = torch.zeros(w1.shape, dtype=dt, device=x.device) if need[1] else None
        db1 = hidden.new_zeros(hidden.shape[1]) if need[2] and ctx.has_bias[0] else None
        dw2 = torch.zeros(w2.shape, dtype=dt, device=x.device) if need[3] else None
        db2 = grad.sum(0) if need[4] and ctx.has_bias[1] else None
        for r in range(0, x.shape[0], MLP_CHUNK_ROWS):
            h, g = hidden[r:r + MLP_CHUNK_ROWS], grad[r:r + MLP_CHUNK_ROWS]
            if dw2 is not None:
                dw2 += linear(g.t(), F.gelu(h).t())
            dh = torch.ops.aten.gelu_backward(linear(g, w2c.t()), h)
            if dx is not None:
                dx[r:r + MLP_CHUNK_ROWS] = linear(dh, w1c.t())
            if dw1 is not None:
                dw1 += linear(dh.t(), x[r:r + MLP_CHUNK_ROWS].to(dt).t())
            if db1 is not None:
                db1 += dh.sum(0)
        return dx, dw1, db1, dw2, db2


class SwinV2Block(nn.Module):
    """Res-post-norm Swin block: ``x + norm1(attn(x))`` then ``x + norm2(mlp(x))``.

    It works on tokens already in its window order (:func:`window_layout`): the stage pads,
    shifts and partitions the map (one gather), as the official code, HF transformers, mmdet
    and mmpretrain do with pad, roll and partition.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool,
                 pretrained_window_size: int = 0, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, extra_norm: bool = False,
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.shifted = shifted
        self.attn = WindowAttentionV2(dim, num_heads, window_size, pretrained_window_size,
                                      qkv_bias, attn_drop, drop, fused=fused_attn)
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.norm2 = nn.LayerNorm(dim)
        # SwinV2-G closes every 6th block with a norm on the main branch too
        self.norm3 = nn.LayerNorm(dim) if extra_norm else None

    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, C) -> (B, L, C): L = num_windows * window^2 tokens in window order.

        Args:
            window: window side.
            mask: (num_windows, N, N) shift mask for a shifted layout, else None.

        When no gradient is needed, ``x`` is updated in place, ``INFERENCE_CHUNK_TOKENS`` at a
        time, and returned.
        """
        B, L, C = x.shape
        N = window * window
        if torch.is_grad_enabled() and (x.requires_grad or
                                        any(p.requires_grad for p in self.parameters())):
            return self._windows(x, window, mask, inplace=False)
        per = max(1, INFERENCE_CHUNK_TOKENS // N)  # windows per chunk
        if is_compiling():
            per = L // N
        for b in range(B):
            for w in range(0, L // N, per):
                self._windows(x[b:b + 1, w * N:(w + per) * N], window,
                              None if mask is None else mask[w:w + per], inplace=True)
        return x

    def _windows(self, x: torch.Tensor, window: int, mask: torch.Tensor | None,
                 inplace: bool) -> torch.Tensor:
        """The block on (B, l, C) tokens of whole windows; ``mask`` has one row per window."""
        B, L, C = x.shape
        y = self.attn(x.view(-1, window * window, C), window, mask).view(B, L, C)
        y = self.drop_path(self.norm1(y))
        x = x.add_(y) if inplace else x + y
        y = self.drop_path(self.norm2(self.mlp(x)))
        x = x.add_(y) if inplace else x + y
        if self.norm3 is not None:
            x = x.copy_(self.norm3(x)) if inplace else self.norm3(x)
        return x


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation, then reduction 4C -> 2C, then LayerNorm(2C) (SwinV2 order).

    Odd sizes are zero-padded at the bottom/right: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, 2)
        # channel order (row, col) = (0,0), (1,0), (0,1), (1,1): the official layout
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.norm(linear(x, self.reduction.weight))


class SwinV2Stage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows.

    The shift mask depends only on the padded map size, window and shift, so it is built once
    per shape and device and shared by every shifted block of the stage.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 pretrained_window_size: int = 0, downsample: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: list[float] | None = None,
                 with_cp: bool = False, extra_norm_every: int = 0,
                 fused_attn: bool = True) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.downsample = PatchMerging(dim // 2) if downsample else None
        self.window_size = window_size
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(
            SwinV2Block(dim, num_heads, window_size, shifted=i % 2 == 1,
                        pretrained_window_size=pretrained_window_size, mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                        drop_path=drop_path[i],
                        extra_norm=bool(extra_norm_every) and (i + 1) % extra_norm_every == 0,
                        fused_attn=fused_attn)
            for i in range(depth))
        self._masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._layouts: OrderedDict[tuple, dict] = OrderedDict()

    def set_window_size(self, window_size: int) -> None:
        """Use ``window_size`` from now on; learned weights are untouched."""
        self.window_size = window_size
        self._masks.clear()
        self._layouts.clear()
        for blk in self.blocks:
            blk.attn.set_window_size(window_size)

    def shift_mask(self, H: int, W: int, window: int, shift: int,
                   device: torch.device) -> torch.Tensor:
        """Cached :func:`shift_attn_mask` for an H x W (unpadded) map."""
        Hp, Wp = H + (-H) % window, W + (-W) % window
        return _cached(self._masks, (Hp, Wp, window, shift, str(device)),
                       lambda: shift_attn_mask(Hp, Wp, window, shift, device))

    def layouts(self, H: int, W: int, window: int, shift: int, device: torch.device) -> dict:
        """Cached gather indices between the row-major map and the window orders.

        Keys: ``('to', a, b)``: from order a (None = the row-major map) to the window order
        of shift b; ``('back', a)``: from order a to the map; ``('pad', a)``: positions of
        order a that hold padding (None without padding).
        """
        def build() -> dict:
            orders = {s: window_layout(H, W, window, s) for s in {0, shift}}
            index = {}
            for b, (source, position, pad) in orders.items():
                index['pad', b] = pad.to(device) if pad.numel() else None
                source = source.clamp(max=H * W - 1)  # padding is zeroed after the gather
                index['to', None, b] = source.to(device)
                for a, (_, before, _) in orders.items():
                    index['to', a, b] = before[source].to(device)
                index['back', b] = position.to(device)
            return index
        return _cached(self._layouts, (H, W, window, shift, str(device)), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C/2 or C) -> (B, H', W', C); H' = ceil(H/2) when downsampling."""
        if self.downsample is not None:
            x = self.downsample(x)
        B, H, W, C = x.shape
        window, shift = effective_window(H, W, self.window_size, self.window_size // 2)
        mask = self.shift_mask(H, W, window, shift, x.device) if shift else None
        index = self.layouts(H, W, window, shift, x.device)
        x = x.reshape(B, H * W, C)
        order = None
        for blk in self.blocks:
            s = shift if blk.shifted else 0
            fresh = s != order
            if fresh:
                x = x.index_select(1, index['to', order, s])
                order = s
            pad = index['pad', s]
            if pad is not None:  # the attention must see zero padding
                # in place unless autograd may still need the previous block's output
                fill = fresh or not torch.is_grad_enabled()
                x = x.index_fill_(1, pad, 0) if fill else x.index_fill(1, pad, 0)
            m = mask if s else None
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(blk, x, window, m, use_reentrant=False)
            else:
                x = blk(x, window, m)
        return x.index_select(1, index['back', order]).view(B, H, W, C)
