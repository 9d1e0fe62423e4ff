"""SwinV2 window attention: scaled cosine attention with a continuous position bias (CPB).

The module holds the weights and the window-dependent tables and computes the terms of the
logits from them (temperature, position bias); the math itself is stated once in
:mod:`swinv2_backbone.kernels.reference`, which its forward runs. The fast paths compute the
same from a block's weights (:mod:`swinv2_backbone.kernels`), each tested against it.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..kernels.reference import (PositionBias, Temperature, position_bias, reference_attention,
                                 split_windows, temperature)
from ..ops import relative_coords_table, relative_position_index
from ..runtime.execution import Execution

__all__ = ['WindowAttentionV2']


class WindowAttentionV2(nn.Module):
    """Multi-head self-attention inside windows, SwinV2 style (see the module docstring).

    The coordinate table and the relative index depend only on the window, so they are
    non-persistent buffers rebuilt by :meth:`set_window_size`; a checkpoint never carries them.

    Args:
        dim: channels.
        num_heads: attention heads.
        window_size: window side the buffers are built for.
        pretrained_window_size: window the CPB was pretrained at (0 = none: the window itself):
            the coordinates are normalised by it, so the learned MLP transfers to other
            windows. :meth:`set_window_size` keeps what the weights learned at the window
            they were built at.
        qkv_bias: learn q and v biases (SwinV2 has no k bias).
        attn_drop, proj_drop: dropout rates.
        cpb_hidden: hidden width of the CPB MLP.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int,
                 pretrained_window_size: int = 0, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0,
                 cpb_hidden: int = 512) -> None:
        super().__init__()
        # (key, (qkv_bias, temperature, pos_bias)) of the last eval forward: see logit_terms
        self._terms_cache: tuple[tuple, tuple] | None = None
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
            self.register_buffer('k_bias', torch.zeros(dim), persistent=False)  # always zero
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self._build_tables(window_size)

    def set_window_size(self, window_size: int) -> None:
        """Use ``window_size`` from now on, as a model built at it with the current window as
        its pretrained window (when it has none): the CPB keeps the coordinate normalisation
        its weights learned. Learned weights are untouched."""
        if not self.pretrained_window_size:
            self.pretrained_window_size = self.window_size
        self._build_tables(window_size)

    def _build_tables(self, window_size: int) -> None:
        """The window-dependent buffers: CPB coordinates and the relative index."""
        device = self.qkv.weight.device
        self.window_size = window_size
        # (window, device) -> (table, index) of windows shrunk to small maps
        self._shrunk_tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.register_buffer('relative_coords_table',
                             relative_coords_table(window_size, self.pretrained_window_size)
                             .to(device), persistent=False)
        self.register_buffer('relative_position_index',
                             relative_position_index(window_size).to(device), persistent=False)

    # ---------------------------------------------------------------- the terms of the logits
    def temperature(self, plain: bool = False) -> torch.Tensor:
        """(heads, 1, 1) ``exp(logit_scale)``, clamped at 100; ``plain``: in plain ops (a
        graph for another runtime), not through the autograd function."""
        return temperature(self.logit_scale) if plain else Temperature.apply(self.logit_scale)

    def qkv_bias(self) -> torch.Tensor | None:
        """(3C,) the q and v biases with a zero k bias, or None."""
        if self.q_bias is None:
            return None
        # the zero k bias is a buffer: FSDP's mixed precision leaves it float32
        return torch.cat((self.q_bias, self.k_bias.to(self.q_bias.dtype), self.v_bias))

    def logit_terms(self, window: int, execution: Execution) -> tuple:
        """``(qkv_bias(), temperature(), position_bias)`` for a window, the terms every
        forward computes from the weights alone.

        Without autograd in eval mode they are cached (three ops fewer per block and the CPB
        MLP not run at all); the key holds the version counters of the weights they come
        from, so loading or changing those weights invalidates it.
        """
        key = None
        params = [*self.cpb_mlp.parameters(), self.logit_scale]
        if self.q_bias is not None:
            params += [self.q_bias, self.v_bias]
        # nor for weights made under inference_mode (they have no version counter)
        if not self.training and execution.may_cache and \
                not any(p.is_inference() for p in params):
            key = (window, self.relative_coords_table.device, *(p._version for p in params))
            if self._terms_cache is not None and self._terms_cache[0] == key:
                return self._terms_cache[1]
        # the position bias in float32 under autocast too: bf16 rounds it by up to
        # 0.03
        with torch.autocast(self.relative_coords_table.device.type, enabled=False) \
                if execution.amp is not None else nullcontext():
            pos_bias = self._position_bias(window, execution.exporting)
        terms = (self.qkv_bias(), self.temperature(execution.exporting), pos_bias)
        if key is not None:
            self._terms_cache = (key, terms)
        return terms

    def position_bias(self, window: int, execution: Execution) -> torch.Tensor:
        """``CPB_SCALE * sigmoid(cpb)`` for a window: (num_heads, window*window, window*window),
        cached with the other terms (:meth:`logit_terms`)."""
        return self.logit_terms(window, execution)[2]

    def _position_bias(self, window: int, exporting: bool) -> torch.Tensor:
        # the table in the CPB weights' dtype: FSDP's mixed precision casts parameters to bf16
        # and keeps buffers float32; .half() casts both
        device, dtype = self.relative_coords_table.device, self.cpb_mlp[0].weight.dtype
        if exporting:  # the window may be symbolic: the graph computes the tables from it
            table = relative_coords_table(window, self.pretrained_window_size).to(device, dtype)
            index = relative_position_index(window).to(device)
        elif window == self.window_size:
            table, index = self.relative_coords_table.to(dtype), self.relative_position_index
        else:  # the map is smaller than the window, which shrinks to it (see effective_window),
            # normalised as the official code does there: by the shrunk window, if not pretrained
            key = (window, str(device), dtype)
            if key not in self._shrunk_tables:  # built once (a CUDA graph capture cannot
                # copy from the host), as plain tensors that training may save for backward
                with torch.inference_mode(False):
                    self._shrunk_tables[key] = (
                        relative_coords_table(window, self.pretrained_window_size).to(
                            device, dtype),
                        relative_position_index(window).to(device))
            table, index = self._shrunk_tables[key]
        fc1, fc2 = self.cpb_mlp[0], self.cpb_mlp[2]
        args = (table.reshape(-1, 2), index.view(-1), fc1.weight, fc1.bias, fc2.weight)
        pos_bias = position_bias(*args) if exporting else PositionBias.apply(*args)
        N = window * window
        return pos_bias.view(self.num_heads, N, N)

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None,
                execution: Execution) -> torch.Tensor:
        """Attend within windows, as the official code does.

        Args:
            x: (B, L, C) tokens window by window, L = num_windows * window^2; or
                (B, nW, N, C) windows (the export path, whose symbolic sizes are not divided).
            window: side of the windows in ``x``.
            mask: (num_windows, N, N) additive shift mask, or None.
            execution: this forward's plan (caching of the logits' terms, export).

        Returns:
            the shape of ``x``
        """
        qkv_bias, t, pos_bias = self.logit_terms(window, execution)
        windows, mask = split_windows(x, mask, window)  # (B_, N, C), (B_, N, N)
        out = reference_attention(windows, self.qkv.weight, qkv_bias, t, pos_bias, mask,
                                  self.num_heads, self.attn_drop, execution.exporting)
        return self.proj_drop(self.proj(out.reshape(x.shape)))
