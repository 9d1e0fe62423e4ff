"""How a forward runs: decided once per forward, as plain data the layers below read.

``SwinV2Backbone(execution=...)`` names the path (or gives a :class:`Request`); :func:`decide`
turns it and the state of the call (device, autograd, autocast, tracing) into an
:class:`Execution`, a frozen value passed down to every stage, block and kernel. Nothing here
runs a kernel: the fast paths live in :mod:`swinv2_backbone.kernels`, each block picks its
kernel by :attr:`Execution.block`. The paths:

- ``'reference'``: the modules as written, the official code's plain ops;
- ``'cpu'``: the CPU kernels (:mod:`~swinv2_backbone.kernels.cpu`): oneDNN GEMMs, attention a
  few windows at a time, in-place inference in cache-sized chunks, lean autograd functions;
- ``'batched'``: whole-stage ops for GPUs (:mod:`~swinv2_backbone.kernels.device`), on CUDA
  with fused Triton kernels (:mod:`~swinv2_backbone.kernels.fused`);
- ``'auto'`` (default): ``'cpu'`` on CPU, ``'batched'`` on every other device.

While a graph is recorded for another runtime (ONNX, ``torch.export``, ``torch.jit.trace``)
every request runs the reference, with windows, padding and masks computed in the graph from
the input's shape (``Execution.exporting``). Every path gives the reference's result
(tests/test_paths.py).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .. import hardware
from ..compat import (autocast_available, autocast_dtype, autocast_enabled, is_compiling,
                      is_exporting)

__all__ = ['EXECUTION_PATHS', 'Execution', 'Request',
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
            rows (BENCHMARKS.md).
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
        dropout: dropout is active (training with a rate > 0): the blocks run as written,
            which apply it.
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
    dropout: bool = False
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

    @property
    def block(self) -> str | None:
        """The fast path that runs each whole block (a name in
        :data:`~swinv2_backbone.kernels.backends.BLOCK_KERNELS`), or None: the modules as
        written (the reference, an export, or active dropout, which only they apply)."""
        if self.exporting or self.path == 'reference' or self.dropout:
            return None
        if self.path == 'batched':
            return 'batched'
        return 'cpu' if self.grad else 'cpu inference'

    @property
    def attention_backend(self) -> str:
        """The name in :data:`~swinv2_backbone.kernels.backends.ATTENTION_BACKENDS` of the
        attention this forward runs."""
        if self.exporting:
            return 'export'
        if self.block is None:
            return 'reference'
        if self.path == 'batched':
            return 'batched, fused' if self.fused else 'batched'
        return self.block

    @property
    def shifted_tokens(self) -> str:
        """The order of the shifted windows' tokens in a stage: ``'positions'`` (the n-th
        tokens of all windows, then the next n) for the batched backends, whose SDPA output
        is in that order (:func:`~swinv2_backbone.kernels.device.window_attention`),
        otherwise ``'windows'`` (window by window)."""
        return 'positions' if self.path == 'batched' and self.block is not None else 'windows'

    @property
    def patch_gemm(self) -> bool:
        """The patch embedding as one GEMM of the image's patches (the cpu path), not as a
        convolution."""
        return self.path == 'cpu' and not self.exporting

    @property
    def blocked_transpose(self) -> bool:
        """Output maps copied to NCHW a few rows at a time (the cpu path without autograd or
        compiling)."""
        return self.path == 'cpu' and not (self.grad or self.compiling or self.exporting)


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


def decide(requested: str | Request, x: torch.Tensor, params: Iterable[torch.Tensor],
           dropout: bool = False, cuda_graph: bool = False) -> Execution:
    """The :class:`Execution` of a forward on ``x``, for the path ``requested`` (a name from
    ``EXECUTION_PATHS``, or a :class:`Request`).

    Args:
        params: the model's parameters (autograd records the forward if one needs a grad).
        dropout: the model applies dropout in this forward.
        cuda_graph: the model asks for CUDA graphs.
    """
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
        x.requires_grad or any(p.requires_grad for p in params))
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
        dropout=dropout,
        cuda_graph=cuda_graph and device == 'cuda' and not compiling and not exporting
        and not captured,
        captured=captured,
        chunk_tokens=base.bf16_chunk_tokens if bf16_inference else base.chunk_tokens,
        train_chunk_tokens=base.train_chunk_tokens, chunk_logits=base.chunk_logits,
        # the batched path works on whole stages: no chunks
        mlp_chunk_rows=None if path == 'batched' else base.mlp_chunk_rows)
