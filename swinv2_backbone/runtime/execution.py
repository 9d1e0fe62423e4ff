"""How a forward runs: one decision per forward, passed down to every stage, block and kernel.

``SwinV2Backbone(execution=...)`` picks the path (a name, or a :class:`Request`);
:func:`decide` turns it and the state of the call (device, autograd, autocast, tracing) into
an :class:`Execution` once per forward: the plan, whose members the modules call
(``patch_embed``, ``linear``, ``norm``, ``residual``, ``mlp``, ``attention``,
``over_windows``, ``channels_first``), so that they state the model and never branch on its
flags. The paths:

- ``'reference'``: the SwinV2 math in plain ops (``F.normalize``, matmul, softmax, matmul), as
  the official code writes it; also what attention dropout in training runs.
- ``'cpu'``: the CPU kernels (:mod:`swinv2_backbone.kernels.cpu`): oneDNN GEMMs (on CPUs with
  AVX-512), attention a few windows at a time into reused buffers, in-place inference in
  cache-sized chunks, and lean autograd functions for training.
- ``'batched'``: whole-stage ops for GPUs (:mod:`swinv2_backbone.kernels.device`): one qkv GEMM,
  one q/k normalisation and one ``scaled_dot_product_attention`` per block, no Python loop
  over images or chunks, autograd for backward; on CUDA, fused Triton kernels
  (:mod:`swinv2_backbone.kernels.fused`) for the q/k normalisation (with its backward) and,
  in inference, the residual norms.
- ``'auto'`` (default): ``'cpu'`` on CPU, ``'batched'`` on every other device.

While a graph is recorded for another runtime (ONNX export, ``torch.export``,
``torch.jit.trace``), every request runs ``'reference'``: plain ops only (no custom autograd
functions, Triton, oneDNN or CUDA graphs), and the stages compute windows, padding and shift
masks from the input's shape inside the graph (``Execution.exporting``), so that one exported
graph takes any input size.

Orthogonal to the path: ``SwinV2Backbone(cuda_graph=True)`` replays CUDA inputs' forwards (and
backwards) from CUDA graphs (:mod:`swinv2_backbone.runtime.graphs`); :func:`decide` says when.

Every path gives the reference's result (tests/test_paths.py), so the choice changes speed and
memory, never numerics beyond float rounding.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import hardware, ops
from ..compat import (autocast_available, autocast_dtype, autocast_enabled, is_compiling,
                      is_exporting)
from ..kernels import cpu, device, onednn
from ..kernels import fused as fused_kernels

__all__ = ['ATTENTION_BACKENDS', 'AttentionBackend', 'EXECUTION_PATHS', 'Execution', 'Request',
           'check_execution', 'decide']

EXECUTION_PATHS = ('auto', 'reference', 'cpu', 'batched')


@dataclass(frozen=True)
class Request:
    """How a user asks a backbone to run (``SwinV2Backbone(execution=Request(...))``; a plain
    path name is ``Request(path)``). :func:`decide` resolves it, per forward, into an
    :class:`Execution`.

    Attributes:
        path: one of ``EXECUTION_PATHS``.
        onednn: float32 CPU linears on oneDNN: None (where its GEMM beats MKL's:
            :data:`~swinv2_backbone.hardware.ONEDNN_FP32`), True or False.
        fused: the batched path on the fused Triton kernels: None (on inputs of devices
            other than the CPU, where they run: CUDA), True (also on CPU inputs where
            Triton's interpreter runs: the tests) or False (never).
        chunk_tokens, train_chunk_tokens, chunk_logits, mlp_chunk_rows: the cpu path's chunk
            sizes (see :class:`Execution`); tests choose small ones.
        bf16_chunk_tokens: ``chunk_tokens`` in bf16 inference, whose GEMMs run faster on more
            rows: at 512x512 on a Xeon with AMX, 8192 tokens took 130 ms against 146 with
            2048 (800x1344: 574 against 656); in float32 4096 and 8192 were within 3% of
            2048.
    """

    path: str = 'auto'
    onednn: bool | None = None
    fused: bool | None = None
    chunk_tokens: int = 2048
    train_chunk_tokens: int = 4096
    chunk_logits: int = 1 << 20
    mlp_chunk_rows: int | None = 4096
    bf16_chunk_tokens: int = 8192


@dataclass(frozen=True)
class Execution:
    """What one forward does, decided by :func:`decide`.

    Attributes:
        path: 'reference', 'cpu' or 'batched' (never 'auto').
        grad: autograd records this forward (some input or parameter needs a gradient).
        amp: the autocast dtype on the input's device, or None outside autocast.
        compiling: ``torch.compile`` is tracing this forward.
        exporting: a graph is recorded for another runtime (ONNX, ``torch.export``,
            ``torch.jit.trace``): the path is 'reference' and the stages derive their layout
            from the input's (symbolic) shape in the graph, caching nothing.
        onednn: float32 CPU linears, and the cpu path's backward GEMMs, run on oneDNN (the cpu
            path, outside autocast, jit tracing, which cannot record the op, and compiling,
            whose inductor cannot lower it), as :attr:`Request.onednn` asks.
        bf16_inference: CPU bf16 autocast without autograd on the cpu path, not compiling,
            on a CPU with oneDNN's bf16 GEMM: the linears are oneDNN bf16 GEMMs; the position
            bias, the logits and the softmax stay float32, P @ V runs in bf16.
        attn_dropout: attention dropout is active (training with a rate > 0): the attention
            runs the reference ops, which apply it.
        fused: the batched path runs the fused Triton kernels
            (:mod:`swinv2_backbone.kernels.fused`: q/k/v to SDPA's layout with the q/k
            normalisation, with its backward in training, and without autograd each residual
            ``x += norm(y)``): outside compiling and tracing, not in float64, where
            Triton >= 3.0 runs (:func:`~swinv2_backbone.hardware.triton_runs_on`), as
            :attr:`Request.fused` asks.
        cuda_graph: replay this forward from a CUDA graph (requested, on a CUDA input, not
            compiling or tracing, and not inside a capture already).
        captured: this forward is being recorded into a CUDA graph, to be replayed later:
            nothing computed from the weights may be cached outside it.
        chunk_tokens: the cpu path's inference runs each block on this many tokens (whole
            windows) at a time, in place, so a chunk's intermediates stay in cache.
        train_chunk_tokens, chunk_logits, mlp_chunk_rows: the cpu path's attention and
            autograd functions work on at most this many tokens, attention logits
            (windows * heads * N * N) and MLP rows at a time. The batched path has no chunks
            (``mlp_chunk_rows`` None: all rows at once).

    Kernels and tests may build one directly (a decided forward); a backbone takes a
    :class:`Request`.
    """

    path: str
    grad: bool = False
    amp: torch.dtype | None = None
    compiling: bool = False
    exporting: bool = False
    onednn: bool = False
    bf16_inference: bool = False
    fused: bool = False
    attn_dropout: bool = False
    cuda_graph: bool = False
    captured: bool = False
    chunk_tokens: int = 2048
    train_chunk_tokens: int = 4096
    chunk_logits: int = 1 << 20
    mlp_chunk_rows: int | None = 4096

    @property
    def may_cache(self) -> bool:
        """Whether results computed from the weights may be kept for later forwards: no
        autograd records this one, and it is not traced (compiling or exporting: version
        counters are not traceable) nor recorded into a CUDA graph (a replay would not
        look)."""
        return not (self.grad or self.compiling or self.exporting or self.captured)

    # ---------------------------------------------------------------- the plan's members
    # What the modules call: each runs the kernel this forward's decision picks, so that the
    # modules state the model and never branch on these flags.

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               gelu: bool = False) -> torch.Tensor:
        """``F.linear`` (then the exact GELU): oneDNN's GEMM where ``onednn`` or
        ``bf16_inference`` says so (:func:`~swinv2_backbone.kernels.onednn.linear`)."""
        return onednn.linear(x, weight, bias, self, gelu)

    def patch_embed(self, x: torch.Tensor, proj: nn.Conv2d) -> torch.Tensor:
        """``proj(x)`` channels-last, (B, C, H, W) -> (B, H/p, W/p, C_out), for a convolution
        whose stride is its kernel p (H, W multiples of p). On the cpu path one GEMM of the
        image's p x p patches (one copy of the image; the convolution and its output's
        channels-last copy took about 7 ms at 512x512 on a Xeon). In bf16 inference it stays
        float32: cheap, and in bf16 it was the largest part of stage 1's error (max 0.049 ->
        0.037 of the features' std at 512^2)."""
        if self.path != 'cpu':
            return proj(x).permute(0, 2, 3, 1)
        B, C, H, W = x.shape
        p = proj.stride[0]
        # (B, C, h, p, w, p) -> (B, h, w, C, p, p): the conv weight's (C_out, C, p, p) order
        patches = x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(
            B, H // p, W // p, C * p * p)
        weight = proj.weight.flatten(1)
        if self.bf16_inference:
            with torch.autocast('cpu', enabled=False):
                return F.linear(patches.to(weight.dtype), weight, proj.bias)
        return self.linear(patches, weight, proj.bias)

    def norm(self, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """``norm(y)``; in training under autocast on the batched path through
        :class:`~swinv2_backbone.kernels.device.AmpLayerNorm`."""
        return device.layer_norm(y, norm, self)

    def residual(self, x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm,
                 drop_path: nn.Module, inplace: bool = False) -> torch.Tensor:
        """``x + drop_path(norm(y))``; ``inplace``: into ``x``. With ``fused`` in inference
        (drop path inactive) into ``x`` by one Triton kernel."""
        dropping = drop_path.training and not isinstance(drop_path, nn.Identity)
        if self.fused and not self.grad and not dropping:
            return fused_kernels.add_layer_norm_(x, y, norm)
        y = drop_path(self.norm(y, norm))
        return x.add_(y) if inplace else x + y

    def mlp(self, mlp: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mlp.fc2(drop(gelu(mlp.fc1(x))))`` (an :class:`~swinv2_backbone.model.blocks.Mlp`),
        and ``x`` as the residual is to add the output to.

        The modules themselves on the reference path, with active dropout and in the batched
        path's inference (with ``mlp.recompute`` in training: under ``torch.utils.checkpoint``);
        training otherwise through :class:`~swinv2_backbone.kernels.cpu.GeluMlp` (saves the fc1
        output only; ``mlp.recompute``: not even that), whose second output is ``x`` as a view
        through which backward adds the residual's gradient into fc1's; cpu inference through
        :meth:`linear` (bias and GELU fused into oneDNN's fc1 GEMM).
        """
        dropout = mlp.training and mlp.drop1.p > 0
        if self.path == 'reference' or dropout or (self.path == 'batched' and not self.grad):
            if mlp.recompute and self.grad:
                return checkpoint(mlp.plain, x, use_reentrant=False), x
            return mlp.plain(x), x
        if self.grad:
            y, residual = cpu.GeluMlp.apply(x.reshape(-1, x.shape[-1]), mlp.fc1.weight,
                                            mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias, self,
                                            mlp.recompute)
            return y.view(x.shape), residual.view(x.shape)
        hidden = self.linear(x, mlp.fc1.weight, mlp.fc1.bias, gelu=True)
        return self.linear(hidden, mlp.fc2.weight, mlp.fc2.bias), x

    def channels_first(self, y: torch.Tensor) -> torch.Tensor:
        """A (B, H, W, C) map as a contiguous (B, C, H, W) one: on the cpu path without
        autograd or compiling a few rows at a time
        (:func:`~swinv2_backbone.kernels.cpu.channels_first`), otherwise by one copy."""
        if self.path == 'cpu' and not (self.grad or self.compiling):
            return cpu.channels_first(y)
        return y.permute(0, 3, 1, 2).contiguous()

    @property
    def attention_backend(self) -> str:
        """The name in :data:`ATTENTION_BACKENDS` of the kernel this forward's attention runs."""
        if self.exporting:
            return 'export'
        if self.path == 'reference' or self.attn_dropout:
            return 'reference'
        if self.path == 'batched':
            return 'batched, fused' if self.fused else 'batched'
        return 'cpu' if self.grad else 'cpu inference'

    @property
    def shifted_tokens(self) -> str:
        """The order of the shifted windows' tokens in a stage: ``'positions'`` (the n-th
        tokens of all windows, then the next n) for the batched backends, whose SDPA output
        is in that order (:func:`~swinv2_backbone.kernels.device.window_attention`),
        otherwise ``'windows'`` (window by window)."""
        return 'positions' if self.attention_backend.startswith('batched') else 'windows'

    def attention(self, x: torch.Tensor, weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                  temperature: torch.Tensor, pos_bias: torch.Tensor, mask: torch.Tensor | None,
                  num_heads: int, window: int,
                  dropout: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine attention of the windows in ``x`` before the output projection, by
        :attr:`attention_backend` (:data:`ATTENTION_BACKENDS`).

        Args:
            x: (B, L, C) tokens window by window (with a ``mask``: in
                :attr:`shifted_tokens` order), or (B, nW, N, C) windows (the export path,
                whose symbolic sizes are not divided).
            weight, qkv_bias: the qkv projection, (3C, C) and (3C,) or None.
            temperature: (heads, 1, 1). pos_bias: (heads, N, N).
            mask: (num_windows, N, N) shift mask, or None.
            dropout: the attention dropout, which the reference backend applies.

        Returns:
            the tokens of ``x`` in any shape with them last: the caller reshapes; and ``x``
            as the residual is to add the branch's output to (a view of it in training on
            the batched path, through which backward adds the residual's gradient in).
        """
        return ATTENTION_BACKENDS[self.attention_backend].run(
            self, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window, dropout)

    def over_windows(self, fn: Callable, x: torch.Tensor, window: int,
                     mask: torch.Tensor | None, real: torch.Tensor | None = None) -> torch.Tensor:
        """``fn(x, window, mask, inplace, rows)`` over a block's (B, L, C) tokens: at once
        (``rows`` None), or on the cpu path's inference in place, ``chunk_tokens`` at a time
        (one image's windows per chunk when compiling), so a chunk's intermediates stay in
        cache; there ``rows`` holds the chunk's positions among ``real`` (the positions that
        hold map tokens, ascending; None: all do), or is None where all are."""
        if self.path != 'cpu' or self.grad:
            return fn(x, window, mask, False, None)
        B, L, _ = x.shape
        N = window * window
        per = L // N if self.compiling else max(1, self.chunk_tokens // N)
        for w in range(0, L // N, per):
            start, end = w * N, min(w + per, L // N) * N
            rows = real
            if real is not None and not self.compiling:  # one chunk per image when compiling
                i, j = torch.searchsorted(real, torch.tensor([start, end])).tolist()
                rows = real[i:j] - start if j - i < end - start else None
            for b in range(B):
                fn(x[b:b + 1, start:end], window, None if mask is None else mask[w:w + per],
                   True, rows)
        return x


# ---------------------------------------------------------------- the attention backends
# One interface: run(execution, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads,
# window, dropout) -> the attention output before the projection (tokens last, any leading
# shape), and x as the residual is to add the branch's output to (x itself, or a view through
# which backward adds the residual's gradient into the projection's: ResidualLinear). Each
# equals ops.reference_attention (tests/test_attention.py enumerates them).


def _windows(x: torch.Tensor, mask: torch.Tensor | None, window: int):
    """(B_, N, C) windows of ``x`` and the mask with one row per window."""
    N = window * window
    if x.dim() == 4:  # (B, nW, N, C), the export path: symbolic sizes, nothing divided
        windows, images = x.flatten(0, 1), x.shape[0]
    else:
        windows = x.view(-1, N, x.shape[-1])
        images = None if mask is None else len(windows) // len(mask)
    if mask is not None:  # window w of image b is row b*nW + w
        mask = mask.repeat(images, 1, 1)
    return windows, mask


def _reference(e, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window,
               dropout):
    windows, mask = _windows(x, mask, window)
    return ops.reference_attention(windows, weight, qkv_bias, temperature, pos_bias, mask,
                                   num_heads, dropout, exporting=e.exporting), x


def _batched(e, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window,
             dropout):
    return device.window_attention(x, weight, qkv_bias, temperature, pos_bias, mask,
                                   num_heads, e.fused, e.grad,
                                   'windows' if mask is None else e.shifted_tokens, e.amp)


def _cpu(e, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window, dropout):
    return cpu.CosineAttention.apply(x.reshape(-1, window * window, x.shape[-1]), weight,
                                     qkv_bias, temperature.view(-1), pos_bias, mask, num_heads,
                                     e), x


def _cpu_inference(e, x, weight, qkv_bias, temperature, pos_bias, mask, num_heads, window,
                   dropout):
    qkv = e.linear(x.reshape(-1, window * window, x.shape[-1]), weight, qkv_bias)
    # under bf16 autocast only the GEMMs run in bf16: the temperature (up to 100) times bf16
    # logits would put errors of tenths into the softmax
    with torch.autocast('cpu', enabled=False) if e.bf16_inference else nullcontext():
        out = cpu.attend(*cpu.head_major(qkv, temperature, num_heads), pos_bias, mask,
                         e.chunk_logits, cpu.mask_scales(temperature, e.compiling))
    # in the projection's dtype (head_major): bf16 under autocast, which the output
    # projection takes as it is; otherwise the input's
    return out, x


@dataclass(frozen=True)
class AttentionBackend:
    """A kernel of the window attention: ``run`` (the interface above), and whether it has a
    backward (``trains``; the others run only without autograd)."""

    run: Callable
    trains: bool


ATTENTION_BACKENDS: dict[str, AttentionBackend] = {
    # the official code's plain ops; also what attention dropout in training runs
    'reference': AttentionBackend(_reference, trains=True),
    # the reference while a graph is recorded for another runtime: F.normalize's division
    'export': AttentionBackend(_reference, trains=False),
    # whole-stage SDPA (kernels/device.py); with the fused Triton q/k/v kernels
    'batched': AttentionBackend(_batched, trains=True),
    'batched, fused': AttentionBackend(_batched, trains=True),
    # the cpu path: chunked attention with a hand-written backward, or in place in inference
    'cpu': AttentionBackend(_cpu, trains=True),
    'cpu inference': AttentionBackend(_cpu_inference, trains=False),
}


def check_execution(requested: str | Request) -> None:
    """Raise a clear error for an ``execution`` argument that names no path."""
    if isinstance(requested, Execution):
        raise TypeError(f'execution takes a path name or a Request; an Execution is what '
                        f'decide() makes of one per forward: use Request({requested.path!r}, '
                        '...)')
    path = requested.path if isinstance(requested, Request) else requested
    if path not in EXECUTION_PATHS:
        raise ValueError(f'execution must be one of {EXECUTION_PATHS} or a Request, got '
                         f'{requested!r}')


def decide(requested: str | Request, x: torch.Tensor, module: nn.Module,
           attn_dropout: bool = False, cuda_graph: bool = False) -> Execution:
    """The :class:`Execution` of ``module``'s forward on ``x``, for the path ``requested``
    (a name from ``EXECUTION_PATHS``, or a :class:`Request`); ``cuda_graph``: the module
    asks for CUDA graphs."""
    check_execution(requested)
    base = requested if isinstance(requested, Request) else Request(requested)
    device = x.device.type
    exporting = is_exporting()
    path = 'reference' if exporting else base.path
    if path == 'auto':
        path = 'cpu' if device == 'cpu' else 'batched'
    elif path == 'cpu' and device != 'cpu':
        raise ValueError(f"execution='cpu' runs CPU kernels, but the input is on {x.device}; "
                         "use 'batched' or 'auto'")
    grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in module.parameters()))
    amp = autocast_dtype(device) if autocast_available(device) and autocast_enabled(device) \
        else None
    compiling = is_compiling()
    # not when compiling: inductor lowers oneDNN's linear op only for weights that are graph
    # constants (freezing), and fails on ours; it picks its own GEMMs for F.linear
    onednn_usable = path == 'cpu' and hardware.ONEDNN and not compiling
    # a capture of the caller's own records this forward: no graph of ours inside it
    captured = device == 'cuda' and torch.cuda.is_current_stream_capturing()
    # the kernels compute in float32: not for float64 models
    fused_usable = path == 'batched' and not compiling \
        and x.dtype != torch.float64 and hardware.triton_runs_on(x.device)
    bf16_inference = onednn_usable and hardware.ONEDNN_BF16 and not grad \
        and amp == torch.bfloat16
    return Execution(
        path=path, grad=grad, amp=amp, compiling=compiling, exporting=exporting,
        onednn=onednn_usable and amp is None
        and (hardware.ONEDNN_FP32[grad] if base.onednn is None else base.onednn),
        bf16_inference=bf16_inference,
        fused=fused_usable and (device != 'cpu' if base.fused is None else base.fused),
        attn_dropout=attn_dropout,
        cuda_graph=cuda_graph and device == 'cuda' and not compiling and not exporting
        and not captured,
        captured=captured,
        chunk_tokens=base.bf16_chunk_tokens if bf16_inference else base.chunk_tokens,
        train_chunk_tokens=base.train_chunk_tokens, chunk_logits=base.chunk_logits,
        # the batched path works on whole stages: no chunks
        mlp_chunk_rows=None if path == 'batched' else base.mlp_chunk_rows)
