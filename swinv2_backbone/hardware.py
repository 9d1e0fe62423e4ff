"""What this machine and this PyTorch build offer the kernels, probed once at import.

The one place that asks: :mod:`swinv2_backbone.runtime.execution` decides each forward from these
facts, and the kernels read them. Nothing else of the package is imported here.

- oneDNN (:mod:`~swinv2_backbone.kernels.onednn`): :data:`ONEDNN`, PyTorch's oneDNN linear
  op is there; :data:`ONEDNN_BF16`, its bf16 GEMM runs on this CPU (AVX-512 with bf16, or AMX);
  :data:`ONEDNN_FP32`, where its float32 GEMM beats MKL's (:func:`gains_on`).
- the CPU: :data:`CPU_CAPABILITY` (``torch.backends.cpu.get_cpu_capability()``: 'AVX2',
  'AVX512', ...) and :data:`CPU_VENDOR` (:func:`cpu_vendor`).
- Triton (:mod:`~swinv2_backbone.kernels.fused`): :data:`TRITON`, release 3.0 or newer is
  installed; :data:`INTERPRETED`, its interpreter runs kernels on CPU tensors
  (``TRITON_INTERPRET=1``, where it works: :func:`_interpreter_stores`);
  :func:`triton_runs_on`, a device the kernels run on.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

__all__ = ['CPU_CAPABILITY', 'CPU_VENDOR', 'INTERPRETED', 'ONEDNN', 'ONEDNN_BF16', 'ONEDNN_FP32',
           'TRITON', 'cpu_vendor', 'gains_on', 'triton_runs_on']


def cpu_vendor(text: str | None = None) -> str:
    """'GenuineIntel', 'AuthenticAMD' or '' (unknown), read from ``text``: by default Linux's
    /proc/cpuinfo, else ``platform.processor()`` (which names the vendor on Windows)."""
    if text is None:
        cpuinfo = Path('/proc/cpuinfo')
        text = cpuinfo.read_text(errors='replace') if cpuinfo.exists() else platform.processor()
    return next((v for v in ('GenuineIntel', 'AuthenticAMD') if v in text), '')


def gains_on(capability: str, vendor: str, grad: bool) -> bool:
    """Whether oneDNN's float32 GEMM beats MKL's on a CPU of this ``capability`` and
    :func:`cpu_vendor`, in inference (``grad`` False) or training: with AVX-512, in training
    only where MKL does not use it (any vendor but Intel); with AVX2 on AMD's processors, in
    inference only. Measured in BENCHMARKS.md (the oneDNN module's docstring sums it up)."""
    if capability.startswith('AVX512'):
        return not grad or vendor != 'GenuineIntel'
    return capability == 'AVX2' and vendor == 'AuthenticAMD' and not grad


CPU_CAPABILITY = torch.backends.cpu.get_cpu_capability()
CPU_VENDOR = cpu_vendor()

ONEDNN = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None) is not None \
    and torch.backends.mkldnn.is_available()
# oneDNN's bf16 GEMM needs a CPU with AVX-512 (bf16) or AMX; without, bf16 inference keeps
# autocast's F.linear
ONEDNN_BF16 = ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()
# oneDNN for float32 linears on this CPU: ONEDNN_FP32[grad]
ONEDNN_FP32 = {grad: ONEDNN and gains_on(CPU_CAPABILITY, CPU_VENDOR, grad)
               for grad in (False, True)}

try:
    import triton
    import triton.language as tl  # a global: Triton's interpreter looks for it there
except ImportError:  # CPU-only builds of PyTorch come without Triton
    triton = tl = None
# Triton >= 3.0: older releases (2.1 ships with torch 2.1) have a different interpreter, so
# the fused kernels could not be tested with them
TRITON = triton is not None and int(triton.__version__.split('.')[0]) >= 3


def _interpreter_stores() -> bool:
    """Whether Triton's interpreter writes what a kernel stores back into the tensor. Triton
    3.1's does not under numpy 2 (torch 2.5.1 with numpy 2.1: every store was lost; with numpy
    1.26 they arrived), where the fused kernels' tests could only fail."""
    @triton.jit
    def copy(x, y):
        at = tl.arange(0, 4)
        tl.store(x + at, tl.load(y + at))
    x, y = torch.zeros(4), torch.arange(4.0)
    copy[(1,)](x, y)
    return torch.equal(x, y)


# Triton's interpreter runs the kernels on CPU tensors (read by triton.jit at import), where
# it works
INTERPRETED = TRITON and os.environ.get('TRITON_INTERPRET') == '1' and _interpreter_stores()


@functools.lru_cache(maxsize=None)
def triton_runs_on(device: torch.device) -> bool:
    """Whether the fused kernels can run on ``device``: a CUDA GPU Triton compiles for
    (compute capability 7.0 or newer, as torch.compile asks), or the CPU under Triton's
    interpreter."""
    if not TRITON:
        return False
    if device.type == 'cuda':
        return torch.cuda.get_device_capability(device) >= (7, 0)
    return device.type == 'cpu' and INTERPRETED
