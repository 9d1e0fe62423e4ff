"""SwinV2 building blocks: patch embedding, res-post-norm block, patch merging, stage.

Patch embedding, merging and stages take and return channels-last maps (B, H, W, C). Inside a
stage the tokens stay in window order (see :func:`window_layout`): blocks take (B, L, C).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.utils.checkpoint as cp
from torch import nn

from .attention import WindowAttentionV2
from ..kernels.backends import BLOCK_KERNELS
from ..kernels.interface import BlockWeights, Norm
from ..kernels.onednn import linear, patch_projection
from ..ops import (drop_path, effective_window, pad_to_multiple, select_tokens, shift_attn_mask,
                   size_tensor, window_layout, window_order)
from ..runtime.execution import Execution

__all__ = ['CHECKPOINT_SCOPES', 'DropPath', 'Mlp', 'PatchEmbed', 'PatchMerging', 'StageLayout',
           'SwinV2Block', 'SwinV2Stage', 'WindowOrder']

# Shapes whose layouts a stage keeps (multi-scale training sees many shapes).
SHAPE_CACHE_SIZE = 8

# What gradient checkpointing (``with_cp``) recomputes in backward: each whole block, or only
# each MLP's hidden layer (the largest activations, recomputed by one GEMM)
CHECKPOINT_SCOPES = ('block', 'mlp')


def _cached(cache: OrderedDict, key: tuple, build: Callable[[], object]):
    """``cache[key]``, built on a miss; the least recently used entries beyond
    ``SHAPE_CACHE_SIZE`` are dropped."""
    if key in cache:
        # to the end, the most recently used (by pop: torch 2.6's dynamo has no move_to_end)
        cache[key] = value = cache.pop(key)
        return value
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

    @property
    def rate(self) -> float:
        """The rate this forward drops at: ``drop_prob`` in training, else 0."""
        return self.drop_prob if self.training else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate)

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

    def forward(self, x: torch.Tensor, execution: Execution) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, ceil(H/p), ceil(W/p), C)."""
        x = pad_to_multiple(x, self.patch_size, channels_last=False)
        return self.norm(patch_projection(x, self.proj.weight, self.proj.bias, self.patch_size,
                                          execution))


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout. ``recompute``: in training keep only the input;
    backward recomputes the hidden layer (``with_cp='mlp'``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, recompute: bool = False) -> None:
        super().__init__()
        self.recompute = recompute
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            return cp.checkpoint(self._mlp, x, use_reentrant=False)
        return self._mlp(x)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


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
                 recompute_mlp: bool = False) -> None:
        super().__init__()
        self.shifted = shifted
        self.attn = WindowAttentionV2(dim, num_heads, window_size, pretrained_window_size,
                                      qkv_bias, attn_drop, drop)
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, recompute=recompute_mlp)
        self.norm2 = nn.LayerNorm(dim)
        # SwinV2-G closes every 6th block with a norm on the main branch too
        self.norm3 = nn.LayerNorm(dim) if extra_norm else None

    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None,
                execution: Execution, real: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, C) -> (B, L, C): L = num_windows * window^2 tokens in window order.

        Args:
            window: window side.
            mask: (num_windows, N, N) shift mask for a shifted layout, else None.
            execution: this forward's plan. Its fast path (``execution.block``) computes the
                same as the lines below from :meth:`weights`, in fewer passes.
            real: (H*W,) the positions of ``x`` that hold map tokens (``WindowOrder.real``),
                or None (no padding, or not known).
        """
        if execution.block is not None:
            return BLOCK_KERNELS[execution.block](x, self.weights(window, execution), window,
                                                  mask, real, execution)
        x = x + self.drop_path(self.norm1(self.attn(x, window, mask, execution)))
        x = x + self.drop_path(self.norm2(self.mlp(x)))
        return x if self.norm3 is None else self.norm3(x)

    def weights(self, window: int, execution: Execution) -> BlockWeights:
        """The block's weights for ``window`` as plain tensors, what a fast path takes."""
        attn, mlp = self.attn, self.mlp
        qkv_bias, temperature, pos_bias = attn.logit_terms(window, execution)
        return BlockWeights(
            attn.num_heads, attn.qkv.weight, qkv_bias, temperature, pos_bias,
            attn.proj.weight, attn.proj.bias, _norm(self.norm1),
            mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias, _norm(self.norm2),
            None if self.norm3 is None else _norm(self.norm3), self.drop_path.rate,
            mlp.recompute)


def _norm(norm: nn.LayerNorm) -> Norm:
    return Norm(norm.weight, norm.bias, norm.eps)


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation, then reduction 4C -> 2C, then LayerNorm(2C) (SwinV2 order).

    Odd sizes are zero-padded at the bottom/right: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor, execution: Execution) -> torch.Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)."""
        x = pad_to_multiple(x, 2)
        B, H, W, C = x.shape
        # channel order (row, col) = (0,0), (1,0), (0,1), (1,1), the official layout: column
        # major, by one reshape and permute (which runtimes fuse better than four slices)
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).reshape(
            B, H // 2, W // 2, 4 * C)
        return self.norm(linear(x, self.reduction.weight, None, execution))


@dataclass(frozen=True)
class WindowOrder:
    """An H x W map's tokens in the window order of one shift (see :func:`window_layout`).

    Attributes:
        gather: (Lp,) the row-major token at each position (padding positions: any token,
            zeroed after the gather).
        scatter: (H*W,) the position of each row-major token: the way back to the map.
        pad: (Lp - H*W,) the positions that hold padding, or None without padding.
        from_other: (Lp,) the position in the stage's other order of the token at each
            position, or None when the stage has one order.
        real: (H*W,) the positions that hold map tokens, ascending, or None without padding.
    """

    gather: torch.Tensor
    scatter: torch.Tensor
    pad: torch.Tensor | None
    from_other: torch.Tensor | None
    real: torch.Tensor | None = None


class _Reorder(torch.autograd.Function):
    """``x.index_select(1, index)`` with the rows ``fill`` then zeroed; backward the same
    with ``back`` and ``back_fill``: for a reordering of tokens, the inverse gather
    (one op) instead of index_select's scatter-add into zeros (two).

    ``back`` holds, for each row of ``x``, a row of the output that holds it; rows of ``x``
    that no output row reads (padding) are zeroed by ``back_fill`` (or not listed in
    ``back``, when ``x`` has fewer rows).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, fill: torch.Tensor | None,
                back: torch.Tensor, back_fill: torch.Tensor | None) -> torch.Tensor:
        ctx.back, ctx.back_fill = back, back_fill
        return _gather(x, index, fill)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _gather(grad, ctx.back, ctx.back_fill), None, None, None, None


def _gather(x: torch.Tensor, index: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    y = select_tokens(x, index)
    return y if fill is None else y.index_fill_(1, fill, 0)


def reorder(x: torch.Tensor, index: torch.Tensor, fill: torch.Tensor | None,
            back: torch.Tensor, back_fill: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, C) tokens gathered along L by ``index``, the rows ``fill`` zeroed (see
    :class:`_Reorder`)."""
    return _Reorder.apply(x, index, fill, back, back_fill)


@dataclass(frozen=True)
class StageLayout:
    """What a stage needs for one map size: the window, its orders and the shift mask.

    Attributes:
        window: the window side used (see :func:`effective_window`).
        plain: the order of the unshifted blocks.
        shifted: the order of the shifted blocks, or None when the stage does not shift.
        mask: (num_windows, N, N) the shifted order's mask, or None.
    """

    window: int
    plain: WindowOrder
    shifted: WindowOrder | None
    mask: torch.Tensor | None


def build_stage_layout(H: int, W: int, window: int, shift: int, device: torch.device,
                       dtype: torch.dtype = torch.float32,
                       shifted_tokens: str = 'windows') -> StageLayout:
    """The :class:`StageLayout` of an H x W map (shift 0: no shifted order), its mask in
    ``dtype``: the activations' (FSDP's mixed precision runs bf16 activations without
    autocast; a float32 mask would turn the logits float32). ``shifted_tokens``: the order
    of the shifted windows' tokens, ``'windows'`` or ``'positions'``
    (:attr:`~swinv2_backbone.runtime.execution.Execution.shifted_tokens`)."""
    raw = {s: window_layout(H, W, window, s) for s in {0, shift}}
    if shift and shifted_tokens == 'positions':
        raw[shift] = _positions_major(*raw[shift], window * window)
    orders = {}
    for s, (source, position, pad) in raw.items():
        source = source.clamp(max=H * W - 1)  # padding: any token, zeroed after the gather
        other_position = raw[shift - s][1]
        orders[s] = WindowOrder(
            gather=source.to(device), scatter=position.to(device),
            pad=pad.to(device) if pad.numel() else None,
            from_other=other_position[source].to(device) if shift else None,
            real=position.sort().values.to(device) if pad.numel() else None)
    mask = None
    if shift:
        Hp, Wp = H + (-H) % window, W + (-W) % window
        mask = shift_attn_mask(Hp, Wp, window, shift, device).to(dtype)
    return StageLayout(window, orders[0], orders[shift] if shift else None, mask)


def _positions_major(source: torch.Tensor, position: torch.Tensor, pad: torch.Tensor,
                     N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A :func:`window_layout` (window w's n-th token at w * N + n) in the order of the n-th
    tokens of all windows, then the (n+1)-th (at n * num_windows + w)."""
    nW = len(source) // N

    def moved(p):
        return p % N * nW + p // N
    return source.view(nW, N).t().reshape(-1), moved(position), moved(pad).sort().values


class SwinV2Stage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows.

    The layout (gather indices and shift mask) depends only on the map size, window and shift,
    so it is built once per shape and device and shared by every block of the stage.
    ``with_cp``: what training recomputes in backward, one of ``CHECKPOINT_SCOPES`` or None.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 pretrained_window_size: int = 0, downsample: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: list[float] | None = None,
                 with_cp: str | None = None, extra_norm_every: int = 0) -> None:
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
                        recompute_mlp=with_cp == 'mlp')
            for i in range(depth))
        self._layouts: OrderedDict[tuple, StageLayout] = OrderedDict()

    def set_window_size(self, window_size: int) -> None:
        """Use ``window_size`` from now on; learned weights are untouched."""
        self.window_size = window_size
        self._layouts.clear()
        for blk in self.blocks:
            blk.attn.set_window_size(window_size)

    def layout(self, H: int, W: int, device: torch.device,
               dtype: torch.dtype = torch.float32,
               shifted_tokens: str = 'windows') -> StageLayout:
        """The cached :class:`StageLayout` of an H x W map."""
        window, shift = effective_window(H, W, self.window_size, self.window_size // 2)
        return _cached(self._layouts, (H, W, window, shift, str(device), dtype, shifted_tokens),
                       lambda: build_stage_layout(H, W, window, shift, device, dtype,
                                                  shifted_tokens))

    def forward(self, x: torch.Tensor, execution: Execution) -> torch.Tensor:
        """(B, H, W, C/2 or C) -> (B, H', W', C); H' = ceil(H/2) when downsampling."""
        if self.downsample is not None:
            x = self.downsample(x, execution)
        if execution.exporting:
            return self._forward_symbolic(x, execution)
        B, H, W, C = x.shape
        layout = self.layout(H, W, x.device, x.dtype, execution.shifted_tokens)
        x = x.reshape(B, H * W, C)
        order = None
        for blk in self.blocks:
            target = layout.shifted if blk.shifted and layout.shifted is not None \
                else layout.plain
            # the attention must see zero padding
            if target is not order:  # backward gathers back: from the map, or the other order
                x = reorder(x, target.gather, target.pad, target.scatter) if order is None \
                    else reorder(x, target.from_other, target.pad, order.from_other, order.pad)
                order = target
            elif order.pad is not None:  # not in place: autograd may need the previous output
                x = x.index_fill(1, order.pad, 0) if execution.grad \
                    else x.index_fill_(1, order.pad, 0)
            mask = layout.mask if order is layout.shifted else None
            if self.with_cp == 'block' and x.requires_grad:
                x = cp.checkpoint(blk, x, layout.window, mask, execution, use_reentrant=False)
            else:
                x = blk(x, layout.window, mask, execution, order.real)
        return reorder(x, order.scatter, None, order.gather, order.pad).view(B, H, W, C)

    def _forward_symbolic(self, x: torch.Tensor, execution: Execution) -> torch.Tensor:
        """The export path: :meth:`forward` with the window, shift, orders and mask computed
        in the graph from the map's (symbolic) size, nothing cached.

        Each block's order is gathered from the previous one's with a zero token appended
        (:func:`~swinv2_backbone.ops.window_order` marks padding as one past the last token),
        so padding enters every block as zeros without a branch on the size.
        """
        B, H, W, C = x.shape
        window, shift = effective_window(H, W, self.window_size, self.window_size // 2)
        has_shifted = any(blk.shifted for blk in self.blocks)
        plain = window_order(H, W, window, 0, x.device)
        shifted = window_order(H, W, window, shift, x.device) if has_shifted else None
        mask = shift_attn_mask(H, W, window, shift, x.device) if has_shifted else None
        x = x.reshape(B, H * W, C)
        tokens = size_tensor(H * W, x.device)
        position = None  # (H, W) of each map token in the current order; None: row-major
        for blk in self.blocks:
            source, target = shifted if blk.shifted else plain
            # index into the current tokens, plus one zero token for the padding
            index = source if position is None else torch.where(
                source < tokens, position.reshape(-1)[torch.minimum(source, tokens - 1)],
                size_tensor(x.shape[1], x.device))
            # gathered by the (nW, N) index into (B, nW, N, C): symbolic sizes give
            # window-shaped tokens without a division
            x = torch.cat((x, torch.zeros_like(x[:, :1])), 1)[:, index]
            position = target
            x = blk(x, window, mask if blk.shifted else None, execution).flatten(1, 2)
        return x[:, position]  # (B, H, W, C)
