"""How much a CUDA training step keeps for backward, estimated without a GPU.

A model is built on the CPU, its parameters and buffers are swapped for fake CUDA tensors
(``FakeTensorMode``: shapes, dtypes and devices, no data), and one forward runs under CUDA
autocast with a ``saved_tensors_hooks`` that sums the storages autograd keeps (each once,
parameters excluded). Fake CUDA tensors take CUDA's autocast rules (layer norm in float32,
GEMMs in fp16/bf16), which the CPU's differ from. ``scaled_dot_product_attention`` runs as
the memory-efficient kernel, the one GPUs pick for a float bias, with what it saves (q, k, v,
bias, output, log-sum-exp): choosing a kernel needs a real device.

What it leaves out: parameters, gradients and the backward's transient tensors. For timm's
SwinV2-T at 1024x1024, batch 2, bf16 it estimates 3,548 MiB; the H100 measured a 3,777 MiB
peak, the difference being about the weights and their gradients (2 x 108 MiB).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from swinv2_backbone.compat import TORCH_VERSION

from .opcount import efficient_attention

__all__ = ['FAKE_CUDA', 'NO_FAKE_CUDA', 'cuda_saved_for_backward_mib', 'fake_cuda']

# Where fake CUDA tensors run: with a GPU from torch 2.4 (autocast's device-generic setters),
# without one on torch 2.14, whose fake tensors never ask the driver. Torch 2.5, 2.6 and 2.8
# asked it without a GPU (moving a fake tensor to CUDA; autograd's CUDA stream, which aborted
# the process); releases between 2.8 and 2.14 were not tried.
_GPU = torch.cuda.is_available()
FAKE_CUDA = TORCH_VERSION >= (2, 14) or (TORCH_VERSION >= (2, 4) and _GPU)
NO_FAKE_CUDA = (f'fake CUDA tensors need torch >= 2.14, or >= 2.4 with a GPU; this is torch '
                f'{torch.__version__}' + ('' if _GPU else ' without one'))


@contextmanager
def fake_cuda(amp: torch.dtype | None) -> Iterator[FakeTensorMode]:
    """Fake CUDA tensors without a GPU, under CUDA's autocast to ``amp`` (None: off): yields
    the ``FakeTensorMode``. SDPA runs as the memory-efficient kernel, and the device queries
    of ``execution.decide`` are answered as on a GPU: no capture under way, the fused kernels
    wherever Triton >= 3.0 is installed (their launches skipped: fake tensors hold no data).
    Needs :data:`FAKE_CUDA`."""
    if not FAKE_CUDA:
        raise RuntimeError(NO_FAKE_CUDA)
    from swinv2_backbone import hardware
    from swinv2_backbone.kernels import fused
    with FakeTensorMode(allow_non_fake_inputs=True) as fake, \
            mock.patch.object(F, 'scaled_dot_product_attention', efficient_attention), \
            mock.patch.object(torch.cuda, 'is_current_stream_capturing', lambda: False), \
            mock.patch.object(hardware, 'triton_runs_on', lambda _: hardware.TRITON), \
            mock.patch.object(fused, '_launch', lambda *_, **__: None):
        previous = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
        torch.set_autocast_enabled('cuda', amp is not None)  # torch.autocast refuses
        torch.set_autocast_dtype('cuda', amp or torch.float16)  # without a GPU
        try:
            yield fake
        finally:
            torch.set_autocast_enabled('cuda', previous[0])
            torch.set_autocast_dtype('cuda', previous[1])


def cuda_saved_for_backward_mib(build: Callable[[], nn.Module], size: tuple[int, int],
                                batch: int, amp: torch.dtype | None) -> float:
    """MiB autograd keeps from one training forward of ``build()`` on (batch, 3, *size) as a
    CUDA device would, under autocast to ``amp`` (None: float32). Needs :data:`FAKE_CUDA`."""
    model = build()
    model.train()  # mmpretrain's train() returns None: do not chain
    names = dict(model.named_parameters())
    with fake_cuda(amp) as fake:
        state = {n: fake.from_tensor(t).to('cuda').requires_grad_(n in names and t.requires_grad)
                 for n, t in (*model.named_parameters(), *model.named_buffers())}
        params = {state[n].untyped_storage()._cdata for n in names}
        x = torch.empty(batch, 3, *size, device='cuda')
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage._cdata not in params:
                saved[storage._cdata] = storage.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            torch.func.functional_call(model, state, (x,))
    return sum(saved.values()) / 2**20
