"""SwinV2 window attention: scaled cosine attention with a continuous position bias (CPB).

The math, stated once:

    logits = temperature * cos(q, k) + pos_bias + shift mask,   softmax, times v

with ``temperature = exp(min(logit_scale, log 100))`` per head, q and k normalised by
:func:`~swinv2_backbone.ops.inverse_norm`, ``pos_bias = 16 * sigmoid(CPB)``, where the CPB is
a 2 -> 512 -> heads MLP of log-spaced relative coordinates, and the shift mask -100 between
tokens of a shifted window that were not adjacent.

To change the attention, edit:

1. the math, stated once in :mod:`swinv2_backbone.ops`:
   :func:`~swinv2_backbone.ops.reference_attention` (the reference every backend equals),
   :func:`~swinv2_backbone.ops.inverse_norm` (the q/k normalisation; applied with the
   temperature without autograd: :func:`~swinv2_backbone.ops.scaled_unit_qk`; its forward
   for the export: :func:`~swinv2_backbone.ops.unit_vectors`; its gradient, which
   every hand-written backward uses: :func:`~swinv2_backbone.ops.unit_vector_grad`) and
   :func:`~swinv2_backbone.ops.attention_logits`; here :func:`temperature` and
   :func:`position_bias` (the CPB), with the backward of each (:class:`_Temperature`,
   :class:`_PositionBias`);
2. each backend of :data:`~swinv2_backbone.runtime.execution.ATTENTION_BACKENDS` (one interface):
   the cpu path's :class:`~swinv2_backbone.kernels.cpu.CosineAttention` (forward and its
   hand-written backward) and :func:`~swinv2_backbone.kernels.cpu.head_major` /
   :func:`~swinv2_backbone.kernels.cpu.attend` (inference), whose shift mask is scaled per
   head by :func:`~swinv2_backbone.kernels.cpu.mask_scales` (a bound that assumes the -100
   mask, cosines and a position bias in (0, 16)); the batched path's
   :func:`~swinv2_backbone.kernels.device.window_attention` with
   :class:`~swinv2_backbone.kernels.device.QkvHeads` and, fused, the Triton kernels of
   :func:`~swinv2_backbone.kernels.fused.qkv_heads` (forward, and backward, which restates
   ``unit_vector_grad`` in Triton). tests/test_attention.py runs every registered backend
   against the reference, so a backend left behind fails there.

Guarded by: tests/test_paths.py (every path against the reference, outputs and every gradient,
fp16/bf16 autocast), tests/test_kernels.py (``gradcheck`` of the autograd functions) and
tests/test_oracles.py (timm, HF transformers and mmpretrain with identical weights).
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from ..runtime.execution import Execution
from ..ops import relative_coords_table, relative_position_index

__all__ = ['LOGIT_SCALE_MAX', 'WindowAttentionV2']

# Upper bound of the learned temperature: exp(logit_scale) <= 100, as in the paper.
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)


def temperature(logit_scale: torch.Tensor) -> torch.Tensor:
    """``exp(min(logit_scale, LOGIT_SCALE_MAX))``: the plain ops."""
    return torch.clamp(logit_scale, max=LOGIT_SCALE_MAX).exp()


def position_bias(table: torch.Tensor, index: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                  w2: torch.Tensor) -> torch.Tensor:
    """``16 * sigmoid(CPB)`` gathered by ``index``: the plain ops, (heads, len(index)).

    The CPB MLP ``Linear(2, hidden) -> ReLU -> Linear(hidden, heads, bias=False)`` runs on the
    (2w-1)^2 rows of the coordinate ``table``, as a matrix (the ReLU in place on a view of a
    map-shaped output would cost autograd three copies), and the sigmoid on its (heads,
    (2w-1)^2) result: the gather comes last, into a contiguous tensor.
    """
    return _gather_bias(_cpb(table, w1, b1, w2)[1], index)


def _cpb(table, w1, b1, w2) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPB MLP's hidden layer and ``sigmoid(CPB)``, ((2w-1)^2, heads)."""
    hidden = torch.addmm(b1, table, w1.t()).relu_()
    return hidden, torch.sigmoid(hidden @ w2.t())


def _gather_bias(s: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return (s * 16).t().index_select(1, index)


class _Temperature(torch.autograd.Function):
    """:func:`temperature` with one op fewer in backward than autograd's (three)."""

    @staticmethod
    def forward(ctx, logit_scale: torch.Tensor) -> torch.Tensor:
        t = temperature(logit_scale)
        ctx.save_for_backward(logit_scale, t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        logit_scale, t = ctx.saved_tensors
        return (grad * t).mul_(logit_scale <= LOGIT_SCALE_MAX)


class _PositionBias(torch.autograd.Function):
    """:func:`position_bias` with a hand-written backward: the gather's by ``index_add`` with
    the factor 16 as its ``alpha``, the sigmoid's and the MLP's by their kernels; eight ops,
    one fewer than autograd's. On a GPU each op is a launch, and every block runs these."""

    @staticmethod
    def forward(ctx, table, index, w1, b1, w2):
        hidden, s = _cpb(table, w1, b1, w2)
        ctx.save_for_backward(table, index, w1, w2, hidden, s)
        return _gather_bias(s, index)

    @staticmethod
    def backward(ctx, grad):
        table, index, w1, w2, hidden, s = ctx.saved_tensors
        need = ctx.needs_input_grad
        ds = grad.new_zeros(s.shape[::-1]).index_add_(1, index, grad, alpha=16)
        dz = torch.ops.aten.sigmoid_backward(ds.t(), s)
        dw2 = dz.t() @ hidden if need[4] else None
        dh = torch.ops.aten.threshold_backward(dz @ w2, hidden, 0)
        dw1 = dh.t() @ table if need[2] else None
        db1 = dh.sum(0) if need[3] else None
        return None, None, dw1, db1, dw2


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
        return temperature(self.logit_scale) if plain else _Temperature.apply(self.logit_scale)

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
        # the position bias in float32 under autocast too: bf16 rounds 16 * sigmoid by up to
        # 0.03
        with torch.autocast(self.relative_coords_table.device.type, enabled=False) \
                if execution.amp is not None else nullcontext():
            pos_bias = self._position_bias(window, execution.exporting)
        terms = (self.qkv_bias(), self.temperature(execution.exporting), pos_bias)
        if key is not None:
            self._terms_cache = (key, terms)
        return terms

    def position_bias(self, window: int, execution: Execution) -> torch.Tensor:
        """``16 * sigmoid(CPB)`` for a window: (num_heads, window*window, window*window),
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
        pos_bias = position_bias(*args) if exporting else _PositionBias.apply(*args)
        N = window * window
        return pos_bias.view(self.num_heads, N, N)

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None,
                execution: Execution) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend within windows.

        Args:
            x: (B, L, C) tokens in window order, L = num_windows * window^2 (with a
                ``mask``: in ``execution.shifted_tokens`` order); or (B, nW, N, C) windows (the
                export path, whose symbolic sizes are not divided).
            window: side of the windows in ``x``.
            mask: (num_windows, N, N) additive shift mask, or None.
            execution: how this forward runs (:mod:`swinv2_backbone.runtime.execution`).

        Returns:
            the output, the shape of ``x``; and ``x`` as the residual is to add the output to
            (in training on the batched path a view of it through which backward adds the
            residual's gradient into the qkv projection's: one op and pass fewer)
        """
        qkv_bias, temperature, pos_bias = self.logit_terms(window, execution)
        out, residual = execution.attention(x, self.qkv.weight, qkv_bias, temperature,
                                            pos_bias, mask, self.num_heads, window,
                                            self.attn_drop)
        out = execution.linear(out.reshape(x.shape), self.proj.weight, self.proj.bias)
        return self.proj_drop(out), residual
