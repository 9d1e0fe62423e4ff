"""Count the ATen ops a forward or training step launches, on the ``meta`` device.

The meta device takes the code paths a CUDA device takes (here: the batched path) and runs
without one, so the count says how many kernels a GPU would be asked to launch: on a GPU every
op costs a launch of several microseconds, and a forward of many small ops leaves the GPU
waiting on Python. Views, allocations and metadata queries launch nothing and are not counted.

Two things the meta device does as no GPU would, which :func:`count_step_ops` sets right:

- ``F.scaled_dot_product_attention`` runs its math decomposition there (two bmms, softmax and
  the bias in forward, eight ops in backward) where a GPU launches one fused kernel each way
  (the memory-efficient kernel, the one GPUs pick for a float bias): the count runs that
  kernel (``sdpa='efficient'``; ``'math'``: the meta device's own choice).
- A training loop sets the gradients to None before each step (mmengine's ``OptimWrapper``,
  ``torch.optim``'s default since 2.0), so backward hands each parameter its gradient; a
  second backward without it adds into the first one's, one ``add_`` per parameter
  (``zero_grad=False`` counts that).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['OpCounter', 'count_step_ops', 'efficient_attention']

# ops that allocate or alias without launching a kernel (views are recognised by their schema)
NO_LAUNCH = frozenset({
    'empty', 'empty_like', 'empty_strided', 'new_empty', 'new_empty_strided', 'lift_fresh',
    'detach', '_unsafe_view', 'set_', 'sym_size', 'sym_stride', 'sym_numel', 'sym_storage_offset',
    'is_same_size', '_local_scalar_dense', 'resize_', 'promote_types'})


class OpCounter(TorchDispatchMode):
    """Counts kernel-launching ATen ops by name while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (func.is_view or name in NO_LAUNCH):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def efficient_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                        **_):
    """``F.scaled_dot_product_attention`` as the memory-efficient kernel GPUs run for a float
    bias, on any device (the meta and fake CUDA tensors of the estimates here)."""
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, attn_mask, True, dropout_p, is_causal, scale=scale)[0]


def count_step_ops(build: Callable[[], nn.Module], size: tuple[int, int], batch: int,
                   mode: str, sdpa: str = 'efficient', zero_grad: bool = True,
                   triton: bool = False) -> OpCounter:
    """Ops of one inference forward or training step (gradients set to None, forward, a sum
    of the outputs, backward) of the model ``build()`` makes, on the meta device, after one
    warm-up step (caches filled, as in a training loop). ``sdpa`` and ``zero_grad``: see the
    module docstring. ``triton``: as a GPU with Triton >= 3.0 runs it, the fused kernels
    (:mod:`swinv2_backbone.kernels.fused`) counted as one op a launch (named ``triton`` and the
    kernel) and not run (meta tensors hold no data); without, as one without Triton."""
    from swinv2_backbone import hardware
    from swinv2_backbone.kernels import fused
    if sdpa not in ('efficient', 'math'):
        raise ValueError(f"sdpa must be 'efficient' or 'math', got {sdpa!r}")
    if triton and not hardware.TRITON:
        raise ValueError('triton=True counts the fused kernels, which need Triton >= 3.0')
    launches: Counter[str] = Counter()

    def launch(kernel, grid, device, *args, **kwargs) -> None:
        launches[f'triton {kernel.__name__}'] += 1
    with torch.device('meta'):
        model = build()
    model.train(mode == 'training')
    x = torch.randn(batch, 3, *size, device='meta')

    def step():
        if mode == 'inference':
            with torch.no_grad():
                model(x)
        else:
            if zero_grad:
                model.zero_grad(set_to_none=True)
            sum(o.float().mean() for o in model(x)).backward()
    counter = OpCounter()
    with mock.patch.object(F, 'scaled_dot_product_attention', efficient_attention) \
            if sdpa == 'efficient' else nullcontext(), \
            mock.patch.object(hardware, 'triton_runs_on', lambda _: True) \
            if triton else nullcontext(), mock.patch.object(fused, '_launch', launch):
        step()
        launches.clear()
        with counter:
            step()
    counter.ops.update(launches)
    return counter
