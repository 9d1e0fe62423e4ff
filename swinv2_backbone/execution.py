"""How a forward runs: one decision per forward, passed down to every stage, block and kernel.

``SwinV2Backbone(execution=...)`` picks the path; :func:`decide` turns it and the state of the
call (device, autograd, autocast, tracing) into an :class:`Execution` once per forward:

- ``'reference'``: the SwinV2 math in plain ops (``F.normalize``, matmul, softmax, matmul), as
  the official code writes it; also what attention dropout in training runs.
- ``'cpu'``: the CPU kernels (:mod:`swinv2_backbone.kernels.cpu`): oneDNN GEMMs (on CPUs with
  AVX-512), attention a few windows at a time into reused buffers, in-place inference in
  cache-sized chunks, and lean autograd functions for training.
- ``'batched'``: whole-stage ops for GPUs (:mod:`swinv2_backbone.kernels.device`): one qkv GEMM,
  one q/k normalisation and one ``scaled_dot_product_attention`` per block, no Python loop
  over images or chunks, autograd for backward; in inference on CUDA, fused Triton kernels
  (:mod:`swinv2_backbone.kernels.fused`) for the q/k normalisation and the residual norms.
- ``'auto'`` (default): ``'cpu'`` on CPU, ``'batched'`` on every other device.

While a graph is recorded for another runtime (ONNX export, ``torch.export``,
``torch.jit.trace``), every request runs ``'reference'``: plain ops only (no custom autograd
functions, Triton, oneDNN or CUDA graphs), and the stages compute windows, padding and shift
masks from the input's shape inside the graph (``Execution.exporting``), so that one exported
graph takes any input size.

Orthogonal to the path: ``SwinV2Backbone(cuda_graph=True)`` replays CUDA inputs' forwards (and
backwards) from CUDA graphs (:mod:`swinv2_backbone.graphs`); :func:`decide` says when.

Every path gives the reference's result (tests/test_paths.py), so the choice changes speed and
memory, never numerics beyond float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from . import hardware
from .compat import (autocast_available, autocast_dtype, autocast_enabled, is_compiling,
                     is_exporting)

__all__ = ['EXECUTION_PATHS', 'Execution', 'check_execution', 'decide']

EXECUTION_PATHS = ('auto', 'reference', 'cpu', 'batched')


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
            path, outside autocast and jit tracing, which cannot record the op). Requested as
            None (the default): where oneDNN's GEMM beats MKL's, on CPUs with AVX-512, in
            training only on non-Intel ones
            (:data:`~swinv2_backbone.hardware.ONEDNN_FP32`); True or False chooses.
        bf16_inference: CPU bf16 autocast without autograd on the cpu path, on a CPU with
            oneDNN's bf16 GEMM: the linears are oneDNN bf16 GEMMs, attention and position bias
            stay float32.
        attn_dropout: attention dropout is active (training with a rate > 0): the attention
            runs the reference ops, which apply it.
        fused: the batched path's inference runs the fused Triton kernels
            (:mod:`swinv2_backbone.kernels.fused`: q/k/v to SDPA's layout with the q/k
            normalisation, and each residual ``x += norm(y)``): without autograd, outside
            compiling and tracing, not in float64, where Triton >= 3.0 runs
            (:func:`~swinv2_backbone.hardware.triton_runs_on`). Requested as None (the
            default): on CUDA inputs; True: also on CPU inputs where Triton's interpreter runs
            (the tests); False: never.
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

    Pass an ``Execution`` as the backbone's ``execution`` to choose the chunk sizes too (tests
    use small ones); :func:`decide` fills in the rest for each forward.
    """

    path: str
    grad: bool = False
    amp: torch.dtype | None = None
    compiling: bool = False
    exporting: bool = False
    onednn: bool | None = None
    bf16_inference: bool = False
    fused: bool | None = None
    attn_dropout: bool = False
    cuda_graph: bool = False
    captured: bool = False
    chunk_tokens: int = 2048
    train_chunk_tokens: int = 4096
    chunk_logits: int = 1 << 20
    mlp_chunk_rows: int | None = 4096


def check_execution(requested: str | Execution) -> None:
    """Raise a clear error for an ``execution`` argument that names no path."""
    path = requested.path if isinstance(requested, Execution) else requested
    if path not in EXECUTION_PATHS:
        raise ValueError(f'execution must be one of {EXECUTION_PATHS} or an Execution, got '
                         f'{requested!r}')


def decide(requested: str | Execution, x: torch.Tensor, module: nn.Module,
           attn_dropout: bool = False, cuda_graph: bool = False) -> Execution:
    """The :class:`Execution` of ``module``'s forward on ``x``, for the path ``requested``
    (a name from ``EXECUTION_PATHS``, or an :class:`Execution` whose path and chunk sizes
    are kept); ``cuda_graph``: the module asks for CUDA graphs."""
    check_execution(requested)
    base = requested if isinstance(requested, Execution) else Execution(requested)
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
    onednn_usable = path == 'cpu' and hardware.ONEDNN
    # a capture of the caller's own records this forward: no graph of ours inside it
    captured = device == 'cuda' and torch.cuda.is_current_stream_capturing()
    # the kernels compute in float32: not for float64 models
    fused_usable = path == 'batched' and not grad and not compiling \
        and x.dtype != torch.float64 and hardware.triton_runs_on(x.device)
    return replace(base, path=path, grad=grad, amp=amp, compiling=compiling, exporting=exporting,
                   onednn=onednn_usable and amp is None
                   and (hardware.ONEDNN_FP32[grad] if base.onednn is None else base.onednn),
                   bf16_inference=onednn_usable and hardware.ONEDNN_BF16 and not grad
                   and amp == torch.bfloat16,
                   fused=fused_usable and (device == 'cuda' if base.fused is None else base.fused),
                   attn_dropout=attn_dropout,
                   cuda_graph=cuda_graph and device == 'cuda' and not compiling
                   and not exporting and not captured,
                   captured=captured,
                   # the batched path works on whole stages: no chunks
                   mlp_chunk_rows=None if path == 'batched' else base.mlp_chunk_rows)
