"""SwinV2 window attention: scaled cosine attention with a continuous position bias (CPB)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ops import relative_coords_table, relative_position_index

__all__ = ['WindowAttentionV2']

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
        fused: compute attention with ``F.scaled_dot_product_attention`` (temperature folded
            into the normalised queries, position bias and shift mask as one additive mask)
            instead of the explicit matmul-softmax-matmul. Both give the same result.
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
        # a compiled graph computes it in place (the version counters are not traceable)
        if not self.training and not torch.is_grad_enabled() and \
                not torch.compiler.is_compiling():
            key = (window, self.relative_coords_table.device, torch.is_autocast_enabled('cpu'),
                   *(p._version for p in self.cpb_mlp.parameters()))
            if self._bias_cache is not None and self._bias_cache[0] == key:
                return self._bias_cache[1]
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

    def _fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """SDPA with the temperature already in ``q``: (B_, heads, N, d) -> same.

        The additive mask is given as a (B_, heads, N, N) broadcast view where it can be (no
        copy): 4-D inputs let PyTorch pick its fused CPU kernel.
        """
        B_, h, N, _ = q.shape
        if mask is None:
            attn_mask = bias.unsqueeze(0).expand(B_, h, N, N)
        else:
            nW = mask.shape[0]
            attn_mask = bias.unsqueeze(0) + mask.unsqueeze(1)  # (nW, heads, N, N)
            # window w of image b is row b*nW + w (see window_partition)
            attn_mask = attn_mask.unsqueeze(0).expand(B_ // nW, nW, h, N, N).reshape(B_, h, N, N)
        p = self.attn_drop.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype),
                                              dropout_p=p, scale=1.0)

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
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        # (B_, N, 3C) -> (3, B_, heads, N, C/heads)
        qkv = qkv.reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scale = torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp()  # (heads, 1, 1)
        bias = self.position_bias(window)  # (heads, N, N)
        if self.fused:
            x = self._fused(F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1), v,
                            bias, mask)
        else:
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * scale + bias.unsqueeze(0)
            if mask is not None:
                nW = mask.shape[0]
                # (B, nW, heads, N, N) so each window gets its own mask
                attn = attn.view(-1, nW, self.num_heads, N, N) + mask[None, :, None].to(attn.dtype)
                attn = attn.view(-1, self.num_heads, N, N)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B_, N, C)  # (B_, heads, N, d) -> (B_, N, C)
        return self.proj_drop(self.proj(x))
