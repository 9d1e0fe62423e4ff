#!/usr/bin/env python
"""Checks of the batched path that need a CUDA GPU; CI has none, so these run on a lent one.

    python tools/devkit/gpu_checks.py

1. The batched path against the reference path on the GPU in float32 (TF32 off): outputs and
   every gradient, odd size, padded and shifted windows, two images.
2. PyTorch's fused attention kernels take the batched path's layout: forward and backward run
   with SDPA restricted to the memory-efficient and cuDNN kernels (no math fallback), in
   float32 and under bf16 / fp16 autocast.
3. AMP: a training step under fp16 and bf16 autocast gives finite gradients that point the way
   float32's do (cosine > 0.95 for every parameter).
4. ``torch.compile`` (inductor) of the batched path equals eager.
Prints one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests'))

from conftest import randomize_  # noqa: E402

from swinv2_backbone import SwinV2Backbone  # noqa: E402

ARCH = dict(arch='tiny', window_size=8, drop_path_rate=0.0)


def model(execution: str, state: dict | None = None) -> SwinV2Backbone:
    torch.manual_seed(0)
    m = SwinV2Backbone(**ARCH, execution=execution)
    if state is None:
        randomize_(m)
    else:
        m.load_state_dict(state)
    return m.cuda()


def step(m: SwinV2Backbone, x: torch.Tensor, amp: torch.dtype | None = None):
    m.zero_grad()
    m.train()
    xg = x.clone().requires_grad_()
    with torch.autocast('cuda', dtype=amp or torch.float32, enabled=amp is not None):
        outs = m(xg)
    weights = [torch.linspace(-1, 1, o.numel(), device=x.device).view_as(o) for o in outs]
    sum((o.float() * w).sum() for o, w in zip(outs, weights)).backward()
    grads = {n: p.grad.float().clone() for n, p in m.named_parameters()}
    grads['input'] = xg.grad.float()
    grads['outputs'] = torch.cat([o.detach().float().flatten() for o in outs])
    return grads


def main() -> int:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f'{torch.cuda.get_device_name()}, torch {torch.__version__}')
    failures = []
    x = torch.randn(2, 3, 250, 330, device='cuda')  # padded, shifted, shrunken last stage
    ref = model('reference')
    batched = model('batched', ref.state_dict())

    want, got = step(ref, x), step(batched, x)
    err = max(((got[n] - w).abs().max() / w.abs().max().clamp_min(1e-12)).item()
              for n, w in want.items())
    ok = err < 1e-4
    failures += [] if ok else ['fp32']
    print(f'1. batched vs reference, fp32, outputs and all gradients: max rel err {err:.1e} '
          f'{"ok" if ok else "FAIL"}')

    from torch.nn.attention import SDPBackend, sdpa_kernel
    fused = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    for amp in (None, torch.bfloat16, torch.float16):
        try:
            with sdpa_kernel(fused):
                step(batched, x, amp)
            print(f'2. fused SDPA kernels only ({amp or "fp32"}): forward and backward ran ok')
        except RuntimeError as e:
            failures.append(f'fused {amp}')
            print(f'2. fused SDPA kernels only ({amp or "fp32"}): FAIL {str(e)[:200]}')

    for amp in (torch.float16, torch.bfloat16):
        low = step(batched, x, amp)
        finite = all(torch.isfinite(g).all() for g in low.values())
        cos = min(torch.nn.functional.cosine_similarity(low[n].flatten(), w.flatten(), dim=0)
                  .item() for n, w in want.items() if n != 'input')
        ok = finite and cos > 0.95
        failures += [] if ok else [f'amp {amp}']
        print(f'3. AMP {amp}: finite {finite}, min cosine to fp32 gradients {cos:.4f} '
              f'{"ok" if ok else "FAIL"}')

    batched.eval()
    compiled = torch.compile(batched)
    with torch.no_grad():
        a, b = compiled(x), batched(x)
    err = max(((p - q).abs().max() / q.abs().max()).item() for p, q in zip(a, b))
    ok = err < 1e-4
    failures += [] if ok else ['compile']
    print(f'4. torch.compile (inductor) vs eager: max rel err {err:.1e} {"ok" if ok else "FAIL"}')
    print('all checks passed' if not failures else f'FAILED: {failures}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
