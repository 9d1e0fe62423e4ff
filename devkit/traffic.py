"""How many bytes a CUDA inference forward moves through GPU memory, estimated without a GPU.

Replayed from a CUDA graph, fp16 inference is bound by the GPU's memory traffic (the 2026-11-22
H100 profile, BENCHMARKS.md), so the bytes each kernel reads and writes say where the time
goes. The model runs on fake CUDA tensors (``FakeTensorMode``: shapes, dtypes and devices,
no data) under CUDA's autocast rules (:func:`.activations.fake_cuda`); every
kernel-launching ATen op (:data:`.opcount.NO_LAUNCH` excluded) is charged the bytes of its
tensor arguments and outputs. ``scaled_dot_product_attention`` runs as the memory-efficient
kernel (q, k, v and the bias in, the output out: nothing N x N), and the fused Triton kernels
(:mod:`swinv2_backbone.kernels.fused`), which fake tensors cannot run, are charged what they
read and write.

An estimate: it assumes each byte crosses memory once per kernel (no cache reuse between
kernels, broadcast operands read once) and says nothing of how near each kernel comes to the
bandwidth. Compare implementations with it; measure on a GPU.

    python -m devkit.traffic [--size 800 1344] [--batch 2] [--amp fp16]
"""
from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from swinv2_backbone.apps.extract import AMP_DTYPES
from .activations import fake_cuda
from .opcount import NO_LAUNCH

__all__ = ['TrafficCounter', 'cuda_inference_traffic']


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class TrafficCounter(TorchDispatchMode):
    """Bytes read and written per kernel-launching ATen op name while active."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: Counter[str] = Counter()

    def charge(self, name: str, nbytes: int) -> None:
        self.bytes[name] += nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        # metadata queries (prim.device, ...) return no tensor and launch nothing
        if outputs and not (func.is_view or name in NO_LAUNCH):
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            self.charge(name, sum(_nbytes(t) for t in inputs + outputs))
        return out

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


def cuda_inference_traffic(build: Callable[[], nn.Module], size: tuple[int, int], batch: int,
                           amp: torch.dtype | None) -> TrafficCounter:
    """The bytes of one inference forward of ``build()`` on (batch, 3, *size) as a CUDA device
    would run it (:func:`.activations.fake_cuda`), under autocast to ``amp`` (None:
    float32), after a warm-up forward (caches filled). Needs
    :data:`.activations.FAKE_CUDA`."""
    from swinv2_backbone.kernels import device
    model = build().eval()
    counter = TrafficCounter()

    def qkv_heads(qkv, temperature, num_heads, N, grad=False, tokens='windows'):
        # reads qkv, writes q, k, v
        counter.charge('fused qkv_heads', 2 * _nbytes(qkv))
        B, L, C3 = qkv.shape
        out = qkv.new_empty((3, B * L // N, num_heads, N, C3 // 3 // num_heads))
        return out[0], out[1], out[2]

    def add_layer_norm_(x, y, norm):  # reads x and y, writes x
        counter.charge('fused add_layer_norm_', 2 * _nbytes(x) + _nbytes(y))
        return x

    with fake_cuda(amp) as fake, torch.no_grad(), \
            mock.patch.object(device, 'qkv_heads', qkv_heads), \
            mock.patch.object(device, 'add_layer_norm_', add_layer_norm_):
        state = {n: fake.from_tensor(t).to('cuda')
                 for n, t in (*model.named_parameters(), *model.named_buffers())}
        x = torch.empty(batch, 3, *size, device='cuda')
        torch.func.functional_call(model, state, (x,))  # warm-up
        counter.bytes.clear()  # of the fused kernels' charges
        with counter:
            torch.func.functional_call(model, state, (x,))
    return counter


def main() -> None:
    from .benchmark import IMPLEMENTATIONS
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--window', type=int, default=8)
    parser.add_argument('--amp', choices=(*AMP_DTYPES, 'none'), default='fp16')
    parser.add_argument('--impls', nargs='+', default=['swinv2_backbone',
                                                       'swinv2_backbone (unfused)', 'timm'])
    parser.add_argument('--top', type=int, default=8, help='ops listed per implementation')
    args = parser.parse_args()
    amp = AMP_DTYPES.get(args.amp)
    size = tuple(args.size)
    print(f'estimated GPU memory traffic of one inference forward, batch {args.batch}, '
          f'{size[0]}x{size[1]}, {args.amp}')
    for name in args.impls:
        counter = cuda_inference_traffic(lambda: IMPLEMENTATIONS[name](size, args.window), size,
                                         args.batch, amp)
        top = ', '.join(f'{op} {b / 2**20:.0f}' for op, b in counter.bytes.most_common(args.top))
        print(f'{name}: {counter.total / 2**20:,.0f} MiB ({top})')


if __name__ == '__main__':
    main()
