"""SwinV2 building blocks: patch embedding, res-post-norm block, patch merging, stage.

All of them work on channels-last maps (B, H, W, C).
"""
from __future__ import annotations

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from torch import nn

from .attention import WindowAttentionV2
from .ops import (effective_window, pad_to_multiple, shift_attn_mask, window_partition,
                  window_reverse)

__all__ = ['PatchEmbed', 'Mlp', 'SwinV2Block', 'PatchMerging', 'SwinV2Stage']


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
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, C, h, w) -> (B, h, w, C)


class Mlp(nn.Sequential):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)


class SwinV2Block(nn.Module):
    """Res-post-norm Swin block: ``x + norm1(attn(x))`` then ``x + norm2(mlp(x))``.

    The map is zero-padded to a window multiple first, then cyclically shifted (when this block
    shifts), as the official code, HF transformers, mmdet and mmpretrain do.
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

    def forward(self, x: torch.Tensor, window: int, shift: int,
                mask: torch.Tensor | None) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C).

        Args:
            window, shift: as given by :func:`effective_window` for this map.
            mask: shift mask for the padded map (used only when this block shifts).
        """
        B, H, W, C = x.shape
        shift = shift if self.shifted else 0
        y = pad_to_multiple(x, window)
        Hp, Wp = y.shape[1:3]
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, window), window, mask if shift else None)
        y = window_reverse(y, window, Hp, Wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        y = y[:, :H, :W, :]
        x = x + self.drop_path(self.norm1(y))
        x = x + self.drop_path(self.norm2(self.mlp(x)))
        return self.norm3(x) if self.norm3 is not None else x


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
        return self.norm(self.reduction(x))


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
        self._masks: dict[tuple, torch.Tensor] = {}

    def set_window_size(self, window_size: int) -> None:
        """Use ``window_size`` from now on; learned weights are untouched."""
        self.window_size = window_size
        self._masks.clear()
        for blk in self.blocks:
            blk.attn.set_window_size(window_size)

    def shift_mask(self, H: int, W: int, window: int, shift: int,
                   device: torch.device) -> torch.Tensor:
        """Cached :func:`shift_attn_mask` for an H x W (unpadded) map."""
        Hp, Wp = H + (-H) % window, W + (-W) % window
        key = (Hp, Wp, window, shift, str(device))
        if key not in self._masks:
            # a plain tensor even when first built under inference_mode, so training can reuse it
            with torch.inference_mode(False), torch.no_grad():
                self._masks[key] = shift_attn_mask(Hp, Wp, window, shift, device)
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C/2 or C) -> (B, H', W', C); H' = ceil(H/2) when downsampling."""
        if self.downsample is not None:
            x = self.downsample(x)
        H, W = x.shape[1:3]
        window, shift = effective_window(H, W, self.window_size, self.window_size // 2)
        mask = self.shift_mask(H, W, window, shift, x.device) if shift else None
        for blk in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(blk, x, window, shift, mask, use_reentrant=False)
            else:
                x = blk(x, window, shift, mask)
        return x
