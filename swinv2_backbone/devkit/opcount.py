"""Count the ATen ops a forward or training step launches, on the ``meta`` device.

The meta device takes the code paths a CUDA device takes (here: the batched path) and runs
without one, so the count says how many kernels a GPU would be asked to launch: on a GPU every
op costs a launch of several microseconds, and a forward of many small ops leaves the GPU
waiting on Python. Views, allocations and metadata queries launch nothing and are not counted.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['OpCounter', 'count_step_ops']

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


def count_step_ops(build: Callable[[], nn.Module], size: tuple[int, int], batch: int,
                   mode: str) -> OpCounter:
    """Ops of one inference forward or training step (forward, a sum of the outputs,
    backward) of the model ``build()`` makes, on the meta device, after one warm-up step
    (caches filled, as in a training loop)."""
    with torch.device('meta'):
        model = build()
    model.train(mode == 'training')
    x = torch.randn(batch, 3, *size, device='meta')

    def step():
        if mode == 'inference':
            with torch.no_grad():
                model(x)
        else:
            sum(o.float().mean() for o in model(x)).backward()
    step()
    counter = OpCounter()
    with counter:
        step()
    return counter
