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
5. CUDA graphs (``cuda_graph=True``) equal the eager forward: outputs and every gradient on
   two shapes, after in-place weight updates, with gradients accumulated over two steps, in
   eval after ``load_state_dict``, under bf16 autocast; outputs are fresh tensors; drop path
   draws anew on every replay.
6. The fused Triton kernels (``kernels/fused.py``, inference on CUDA by default) equal the
   batched path without them: float32 (TF32 off) on two shapes, fp16 and bf16 autocast, and
   replayed from a CUDA graph.
Prints one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests'))

from conftest import randomize_  # noqa: E402

from swinv2_backbone import SwinV2Backbone  # noqa: E402

ARCH = dict(arch='tiny', window_size=8, drop_path_rate=0.0)


def model(execution: str, state: dict | None = None, **kw) -> SwinV2Backbone:
    torch.manual_seed(0)
    m = SwinV2Backbone(**{**ARCH, **kw}, execution=execution)
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
    failures += graph_checks(x, batched)
    failures += fused_checks(x, ref.state_dict())
    print('all checks passed' if not failures else f'FAILED: {failures}')
    return 1 if failures else 0


def rel_err(want: dict, got: dict) -> float:
    return max(((got[n] - w).abs().max() / w.abs().max().clamp_min(1e-12)).item()
               for n, w in want.items())


def checker(label: str, failures: list[str]) -> Callable[..., None]:
    """``check(name, err, bound=1e-5)``: prints ``label, name`` with the error and whether
    it is below the bound, and adds ``name`` to ``failures`` if not."""
    def check(name: str, err: float, bound: float = 1e-5) -> None:
        ok = err < bound
        failures.extend([] if ok else [name])
        print(f'{label}, {name}: max rel err {err:.1e} {"ok" if ok else "FAIL"}')
    return check


def graph_checks(x: torch.Tensor, eager: SwinV2Backbone) -> list[str]:
    failures = []
    check = checker('5. cuda_graph', failures)

    graphed = model('batched', eager.state_dict(), cuda_graph=True)
    small = torch.randn(1, 3, 64, 96, device='cuda')  # every window shrinks
    for name, inp in (('250x330 training step', x), ('64x96 training step', small)):
        step(graphed, inp)  # eager: a signature is captured when seen again
        step(graphed, inp)  # the capture
        check(name, rel_err(step(eager, inp), step(graphed, inp)))
    ok = len(graphed._graphs) == 2
    failures += [] if ok else ['cuda_graph captures']
    print(f'5. cuda_graph: {len(graphed._graphs)} graphs captured for 2 shapes '
          f'{"ok" if ok else "FAIL"}')
    with torch.no_grad():
        for m in (eager, graphed):
            for p in m.parameters():
                p.mul_(1.01).add_(0.001)
    check('after in-place weight updates', rel_err(step(eager, x), step(graphed, x)))

    def accumulated(m: SwinV2Backbone) -> dict:
        m.zero_grad(set_to_none=True)
        for inp in (x, x.flip(-1)):
            sum(o.square().mean() for o in m(inp)).backward()
        return {n: p.grad.clone() for n, p in m.named_parameters()}
    accumulated(graphed)  # seen, then captured: the measured steps below are both replays
    check('gradients accumulated over two steps', rel_err(accumulated(eager), accumulated(graphed)))

    for m in (eager, graphed):
        m.eval()
    with torch.no_grad():
        graphed(x)  # seen once: the next eval call captures
        first, want_first = graphed(x), eager(x)
        second = graphed(x.flip(-1))
        check('eval, outputs kept across calls', rel_err(
            dict(enumerate(want_first)), dict(enumerate(first))))
        check('eval, second input', rel_err(dict(enumerate(eager(x.flip(-1)))),
                                            dict(enumerate(second))))
        state = {k: v * 0.9 for k, v in eager.state_dict().items()}
        eager.load_state_dict(state)
        graphed.load_state_dict(state)
        check('eval after load_state_dict', rel_err(dict(enumerate(eager(x))),
                                                    dict(enumerate(graphed(x)))))
    for _ in range(2):  # seen, then captured
        step(graphed, x, torch.bfloat16)
    low_e, low_g = step(eager, x, torch.bfloat16), step(graphed, x, torch.bfloat16)
    finite = all(torch.isfinite(g).all() for g in low_g.values())
    cos = min(torch.nn.functional.cosine_similarity(low_g[n].flatten(), w.flatten(), dim=0)
              .item() for n, w in low_e.items())
    ok = finite and cos > 0.999
    failures += [] if ok else ['cuda_graph bf16']
    print(f'5. cuda_graph, bf16 autocast training: finite {finite}, min cosine to eager '
          f'{cos:.5f} {"ok" if ok else "FAIL"}')

    dropping = model('batched', None, cuda_graph=True, drop_path_rate=0.5).train()
    with torch.no_grad():
        runs = [torch.cat([o.flatten() for o in dropping(x)]) for _ in range(4)]
    ok = all(torch.isfinite(r).all() for r in runs) and not torch.equal(runs[2], runs[3])
    failures += [] if ok else ['cuda_graph drop path']
    print(f'5. cuda_graph, drop path: replays draw anew {"ok" if ok else "FAIL"}')
    for with_cp in (True, 'mlp'):
        try:
            cp = model('batched', eager.state_dict(), cuda_graph=True, with_cp=with_cp)
            step(cp, x)
            step(cp, x)
            check(f'with_cp={with_cp!r}', rel_err(step(eager, x), step(cp, x)))
            want, got = (step(m, x, torch.bfloat16) for m in (eager, cp))
            check(f'with_cp={with_cp!r}, bf16', rel_err(want, got), 2e-2)
        except Exception as e:  # noqa: BLE001 - report what capture makes of checkpointing
            failures.append(f'cuda_graph with_cp={with_cp!r}')
            print(f'5. cuda_graph, with_cp={with_cp!r}: FAIL {type(e).__name__}: {str(e)[:300]}')
    return failures


def fused_checks(x: torch.Tensor, state: dict) -> list[str]:
    from swinv2_backbone.execution import Request, decide
    from swinv2_backbone.hardware import INTERPRETED
    failures = []
    check = checker('6. fused kernels', failures)
    fused = model('batched', state).eval()
    unfused = model(Request('batched', fused=False), state).eval()
    graphed = model('batched', state, cuda_graph=True).eval()
    small = torch.randn(1, 3, 64, 96, device='cuda')  # every window shrinks
    with torch.no_grad():
        on = decide('batched', x, fused).fused and not INTERPRETED
        failures += [] if on else ['fused decision']
        print(f'6. fused kernels chosen for CUDA inference, compiled (interpreted: '
              f'{INTERPRETED}): {on} {"ok" if on else "FAIL"}')
        cases = (('fp32', x, None, 1e-5), ('fp32, 64x96', small, None, 1e-5),
                 ('fp16', x, torch.float16, 1e-2), ('bf16', x, torch.bfloat16, 3e-2))
        for name, inp, amp, bound in cases:
            with torch.autocast('cuda', dtype=amp or torch.float32, enabled=amp is not None):
                want, got = (dict(enumerate(o.float() for o in m(inp)))
                             for m in (unfused, fused))
            check(name, rel_err(want, got), bound)
        graphed(x)  # seen once: the next call captures
        graphed(x)
        want, got = dict(enumerate(fused(x))), dict(enumerate(graphed(x)))
        check('replayed from a CUDA graph', rel_err(want, got))
    return failures


if __name__ == '__main__':
    sys.exit(main())
