"""Checks of the batched path that need a CUDA GPU. CI has none, so they skip there; on a lent
GPU they run with

    python -m pytest -m cuda tests/test_gpu.py -rA

(``-m cuda`` also leaves Triton's interpreter off, so the fused kernels compile; see conftest).

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
   eval after ``load_state_dict``, under bf16 autocast, with activation checkpointing;
   outputs are fresh tensors; drop path draws anew on every replay.
6. The fused Triton kernels (``kernels/fused.py``, on CUDA by default) equal the batched
   path without them: inference in float32 (TF32 off) on two shapes, fp16 and bf16 autocast,
   and replayed from a CUDA graph; a training step's gradients in float32 and under bf16
   autocast (the q/k/v backward kernel on the strided gradients SDPA's fused backward gives).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinv2_backbone import SwinV2Backbone
from devkit.testing import max_rel_err, randomize_
from swinv2_backbone.runtime.execution import Request, decide

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

ARCH = dict(arch='tiny', window_size=8, drop_path_rate=0.0)


@pytest.fixture(autouse=True)
def _no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def build(execution, state: dict | None = None, **kw) -> SwinV2Backbone:
    torch.manual_seed(0)
    m = SwinV2Backbone(**{**ARCH, **kw}, execution=execution)
    if state is None:
        randomize_(m)
    else:
        m.load_state_dict(state)
    return m.cuda()


def step(m: SwinV2Backbone, x: torch.Tensor, amp: torch.dtype | None = None) -> dict:
    """One training step's outputs and gradients (the input's too), by name, in float32."""
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


def outputs(m: SwinV2Backbone, x: torch.Tensor) -> dict:
    return dict(enumerate(o.float() for o in m(x)))


def min_cosine(got: dict, want: dict, skip: tuple[str, ...] = ()) -> float:
    return min(F.cosine_similarity(got[n].flatten(), w.flatten(), dim=0).item()
               for n, w in want.items() if n not in skip)


@pytest.fixture(scope='module')
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 250, 330, device='cuda')  # padded, shifted, shrunken last stage


@pytest.fixture(scope='module')
def small() -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, device='cuda')  # every window shrinks


@pytest.fixture(scope='module')
def state() -> dict:
    return build('reference').state_dict()


@pytest.fixture(scope='module')
def reference_step(x, state) -> dict:
    return step(build('reference', state), x)


def test_batched_equals_reference_in_float32(x, state, reference_step):
    assert max_rel_err(reference_step, step(build('batched', state), x)) < 1e-4


@pytest.mark.parametrize('amp', [None, torch.bfloat16, torch.float16])
def test_fused_sdpa_kernels_take_the_batched_layout(x, state, amp):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        grads = step(build('batched', state), x, amp)  # raises if no fused kernel takes it
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize('amp', [torch.float16, torch.bfloat16])
def test_amp_gradients_point_the_way_float32_does(x, state, reference_step, amp):
    low = step(build('batched', state), x, amp)
    assert all(torch.isfinite(g).all() for g in low.values())
    assert min_cosine(low, reference_step, skip=('input',)) > 0.95


def test_compiled_equals_eager(x, state):
    eager = build('batched', state).eval()
    compiled = torch.compile(eager)
    with torch.no_grad():
        assert max_rel_err(outputs(eager, x), outputs(compiled, x)) < 1e-4


def test_cuda_graph_training_steps_equal_eager(x, small, state):
    eager, graphed = build('batched', state), build('batched', state, cuda_graph=True)
    for inp in (x, small):
        step(graphed, inp)  # eager: a signature is captured when seen again
        step(graphed, inp)  # the capture
        assert max_rel_err(step(eager, inp), step(graphed, inp)) < 1e-5
    assert len(graphed._graphs) == 2
    with torch.no_grad():
        for m in (eager, graphed):
            for p in m.parameters():
                p.mul_(1.01).add_(0.001)
    assert max_rel_err(step(eager, x), step(graphed, x)) < 1e-5, 'after in-place updates'

    def accumulated(m: SwinV2Backbone) -> dict:
        m.zero_grad(set_to_none=True)
        for inp in (x, x.flip(-1)):
            sum(o.square().mean() for o in m(inp)).backward()
        return {n: p.grad.clone() for n, p in m.named_parameters()}
    accumulated(graphed)  # seen, then captured: the measured steps below are both replays
    assert max_rel_err(accumulated(eager), accumulated(graphed)) < 1e-5


def test_cuda_graph_inference_equals_eager(x, state):
    eager = build('batched', state).eval()
    graphed = build('batched', state, cuda_graph=True).eval()
    with torch.no_grad():
        graphed(x)  # seen once: the next eval call captures
        first, want_first = outputs(graphed, x), outputs(eager, x)
        second = outputs(graphed, x.flip(-1))  # the first call's outputs must survive this
        assert max_rel_err(want_first, first) < 1e-5
        assert max_rel_err(outputs(eager, x.flip(-1)), second) < 1e-5
        scaled = {k: v * 0.9 for k, v in state.items()}
        eager.load_state_dict(scaled)
        graphed.load_state_dict(scaled)
        assert max_rel_err(outputs(eager, x), outputs(graphed, x)) < 1e-5


def test_cuda_graph_under_bf16_autocast(x, state):
    eager, graphed = build('batched', state), build('batched', state, cuda_graph=True)
    for _ in range(2):  # seen, then captured
        step(graphed, x, torch.bfloat16)
    want, got = step(eager, x, torch.bfloat16), step(graphed, x, torch.bfloat16)
    assert all(torch.isfinite(g).all() for g in got.values())
    assert min_cosine(got, want) > 0.999


def test_cuda_graph_drop_path_draws_anew_on_each_replay(x):
    dropping = build('batched', None, cuda_graph=True, drop_path_rate=0.5).train()
    with torch.no_grad():
        runs = [torch.cat([o.flatten() for o in dropping(x)]) for _ in range(4)]
    assert all(torch.isfinite(r).all() for r in runs)
    assert not torch.equal(runs[2], runs[3])


@pytest.mark.parametrize('with_cp', [True, 'mlp'])
def test_cuda_graph_with_activation_checkpointing(x, state, with_cp):
    eager, cp = build('batched', state), build('batched', state, cuda_graph=True, with_cp=with_cp)
    step(cp, x)
    step(cp, x)
    assert max_rel_err(step(eager, x), step(cp, x)) < 1e-5
    assert max_rel_err(step(eager, x, torch.bfloat16), step(cp, x, torch.bfloat16)) < 2e-2


def test_fused_kernels_are_chosen_compiled_for_cuda_inference(x, state):
    from swinv2_backbone.hardware import INTERPRETED
    if INTERPRETED:
        pytest.skip('Triton runs interpreted: select the GPU tests alone, with -m cuda')
    assert decide('batched', x, build('batched', state).eval().parameters()).fused


@pytest.mark.parametrize('case', ['fp32', 'fp32 64x96', 'fp16', 'bf16', 'cuda graph'])
def test_fused_kernels_equal_the_unfused_batched_path(x, small, state, case):
    fused = build('batched', state).eval()
    unfused = build(Request('batched', fused=False), state).eval()
    amp, bound = {'fp16': (torch.float16, 1e-2), 'bf16': (torch.bfloat16, 3e-2)}.get(
        case, (None, 1e-5))
    inp = small if case == 'fp32 64x96' else x
    with torch.no_grad():
        if case == 'cuda graph':
            graphed = build('batched', state, cuda_graph=True).eval()
            graphed(x)  # seen once: the next call captures
            graphed(x)
            unfused = fused  # replay against the fused eager forward
            fused = graphed
        with torch.autocast('cuda', dtype=amp or torch.float32, enabled=amp is not None):
            assert max_rel_err(outputs(unfused, inp), outputs(fused, inp)) < bound


@pytest.mark.parametrize('amp', [None, torch.bfloat16])
def test_fused_training_step_equals_the_unfused_batched_path(x, state, amp):
    fused = step(build('batched', state), x, amp)
    unfused = step(build(Request('batched', fused=False), state), x, amp)
    if amp is None:
        assert max_rel_err(unfused, fused) < 1e-4
    else:
        assert min_cosine(fused, unfused) > 0.99
