"""CUDA graphs: the backbone's forward, and in training its backward, captured once per input
signature and replayed (``SwinV2Backbone(cuda_graph=True)``).

Why: on a GPU the eager backbone is bound by the host. A SwinV2-T training step launches
hundreds of kernels, and the GPU waits on Python for much of the step (BENCHMARKS.md). A
replay launches the whole step at once.

What a caller sees (all tested on a GPU by ``tests/test_gpu.py``):

- the same maps and the same gradients as the eager forward: the graph runs its kernels;
- gradients reach the parameters (and the input, if it requires them) through autograd, so
  DDP, gradient accumulation, ``GradScaler`` and gradient clipping see ordinary gradients;
- fresh output tensors on every call (a replay overwrites the graph's own);
- weights updated in place (optimiser steps, ``load_state_dict``, DDP's broadcasts) are what
  the next replay computes with. Moving or casting the module (``.to``, ``.half``) and
  ``set_window_size`` drop the graphs.

The cost: a signature (input shape, dtype, autocast dtype, train/eval, grad mode, which
parameters train) seen for the second time is captured: a few eager warm-up steps, then the
capture; its memory pool (the activations autograd saves) stays reserved while its graph is
cached. Signatures seen once run eagerly, so one-off shapes (validation images of varying
sizes) cost nothing extra. The ``GRAPH_CACHE_SIZE`` most recently used graphs are kept. Graphs
pay off when the shapes repeat: fixed crops (mmseg), large-scale jitter to a fixed size
(Mask2Former), fixed-size inference. With varying shapes (multi-scale detection training)
keep the eager forward: a warning says when graphs are being evicted, and after
``STOP_AFTER_EVICTIONS`` evictions no new signature is captured (those cached still replay).

Not captured (eager instead): inputs off CUDA, ``torch.compile`` and ``torch.jit.trace``, and a
forward inside a capture of the caller's own (the decision is in
:func:`~swinv2_backbone.runtime.execution.decide`).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace

import torch
from torch.autograd.function import once_differentiable

from .execution import Execution

__all__ = ['GRAPH_CACHE_SIZE', 'STOP_AFTER_EVICTIONS', 'CudaGraphs']

# Captured signatures kept per backbone; each holds its activations' memory pool.
GRAPH_CACHE_SIZE = 4
# Eager steps before a capture (cuBLAS/cuDNN set-up, the stages' cached layouts).
WARMUP_STEPS = 2
# A signature is captured the second time it is seen; this many recent ones are remembered.
SEEN_SIGNATURES = 64
# Evictions after which shapes are taken to vary: no more captures, eager instead.
STOP_AFTER_EVICTIONS = 8


class _Captured:
    """One signature's graphs and the static tensors they read and write."""

    def __init__(self, forward: Callable[[torch.Tensor], tuple], x: torch.Tensor,
                 params: list[torch.Tensor], amp: torch.dtype | None, grad: bool,
                 keep: Callable[[], object]) -> None:
        self.x = x.detach().clone().requires_grad_(x.requires_grad)
        self.params = params
        inputs = ([self.x] if x.requires_grad else []) + params

        def run() -> tuple:
            # autocast's weight cache would hold casts made during capture: off
            with torch.autocast('cuda', dtype=amp, cache_enabled=False) if amp else nullcontext():
                return forward(self.x)

        def backward(outs: tuple, grad_outs: list) -> tuple:
            pairs = [(o, g) for o, g in zip(outs, grad_outs) if o.requires_grad]
            return torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                       allow_unused=True)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                outs = run()
                if grad:
                    backward(outs, [torch.ones_like(o) for o in outs])
        torch.cuda.current_stream().wait_stream(side)
        self.forward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.forward_graph):
            self.outs = run()
        self.backward_graph = None
        if grad:
            self.grad_outs = [torch.zeros_like(o) for o in self.outs]
            self.backward_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.backward_graph, pool=self.forward_graph.pool()):
                grads = backward(self.outs, self.grad_outs)
            # the input's gradient (or None), then the parameters'; the graph's own tensors
            # are handed to autograd, which copies them into .grad (it never takes a tensor
            # something else still holds), so accumulation over steps is autograd's
            self.grads = ((grads[0] if x.requires_grad else None),) + \
                tuple(grads[1:] if x.requires_grad else grads)
        self.keep = keep()  # tensors the graphs read that the module may drop from its caches

    def replay(self, x: torch.Tensor) -> tuple:
        if self.x.data_ptr() != x.data_ptr():
            self.x.copy_(x)
        self.forward_graph.replay()
        return tuple(o.clone() for o in self.outs)

    def replay_backward(self, grads: tuple) -> tuple:
        for static, g in zip(self.grad_outs, grads):
            static.copy_(g)
        self.backward_graph.replay()
        return self.grads


class _Replay(torch.autograd.Function):
    """Replays a captured forward; its backward replays the captured backward."""

    @staticmethod
    def forward(ctx, captured: _Captured, x: torch.Tensor, *params: torch.Tensor):
        ctx.captured = captured
        outs = captured.replay(x)
        ctx.mark_non_differentiable(*(o for o, s in zip(outs, captured.outs)
                                      if not s.requires_grad))
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        return (None,) + ctx.captured.replay_backward(grads)


class CudaGraphs:
    """The captured forwards of one backbone, least recently used first.

    Holds no reference to the module: copies and pickles of the module start without graphs.
    """

    def __init__(self) -> None:
        self._captured: OrderedDict[tuple, _Captured] = OrderedDict()
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._evictions = 0

    def __deepcopy__(self, memo: dict) -> CudaGraphs:
        return CudaGraphs()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def __len__(self) -> int:
        return len(self._captured)

    def clear(self) -> None:
        self._captured.clear()
        self._seen.clear()

    def __call__(self, forward: Callable, x: torch.Tensor, execution: Execution,
                 params: list[torch.Tensor], training: bool,
                 keep: Callable[[], object]) -> tuple:
        """``forward(x, execution)`` replayed from the graph of this call's signature: run
        eagerly the first time a signature is seen, captured the second. ``params``: the
        model's parameters (the graph's inputs besides ``x``); ``training``: the model's mode;
        ``keep()`` returns what the graph reads that the model caches and may drop (the
        stages' layouts)."""
        trains = tuple(p.requires_grad for p in params)
        key = (tuple(x.shape), x.dtype, x.device, x.requires_grad, training,
               torch.is_inference_mode_enabled(), execution, trains)
        captured = self._captured.get(key)
        if captured is None and (key not in self._seen
                                 or self._evictions >= STOP_AFTER_EVICTIONS):
            self._seen[key] = None
            if len(self._seen) > SEEN_SIGNATURES:
                self._seen.popitem(last=False)
            return forward(x, execution)
        if captured is None:
            inner = _capturing(execution)
            captured = _Captured(lambda t: forward(t, inner), x,
                                 [p for p in params if p.requires_grad] if execution.grad else [],
                                 execution.amp, execution.grad, keep)
            self._captured[key] = captured
            if len(self._captured) > GRAPH_CACHE_SIZE:
                self._captured.popitem(last=False)
                self._evictions += 1
                if self._evictions == 1:
                    warnings.warn(
                        f'SwinV2Backbone(cuda_graph=True) has seen more than {GRAPH_CACHE_SIZE} '
                        f'input signatures (now {tuple(x.shape)}) and drops the oldest graphs; '
                        'each new one costs a capture, and after '
                        f'{STOP_AFTER_EVICTIONS} evictions new ones run eagerly. With varying '
                        'input shapes, cuda_graph=False is faster.', stacklevel=3)
        else:
            self._captured.move_to_end(key)
        if captured.backward_graph is None:
            return captured.replay(x)
        return _Replay.apply(captured, x, *captured.params)


def _capturing(execution: Execution) -> Execution:
    """The execution of the eager forward that a graph records."""
    return replace(execution, cuda_graph=False, captured=True)
