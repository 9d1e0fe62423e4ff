"""Every execution path gives the reference path's result: outputs and every gradient, at odd
sizes with padded and shifted windows and several images; under fp16 / bf16 autocast; on the
meta device (the paths GPUs take); through torch.compile. The policy is set through the
backbone's ``execution`` argument, never by patching module globals."""
from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.compat import TORCH_VERSION
from swinv2_backbone.runtime.execution import Execution, Request, decide
from swinv2_backbone import hardware

from devkit.testing import NOT_INTERPRETED, randomize_, rel_errs

SMALL = dict(arch=dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8)),
             window_size=4, drop_path_rate=0.0)
# the cpu path with chunk edges inside images and windows that do not divide evenly, with
# each GEMM library whatever this CPU's default (oneDNN only with AVX-512)
SMALL_CHUNKS = Request('cpu', chunk_tokens=48, bf16_chunk_tokens=48, train_chunk_tokens=48,
                       chunk_logits=100, mlp_chunk_rows=40)
FAST_PATHS = {'cpu': 'cpu',
              'cpu, small chunks, oneDNN GEMMs': replace(SMALL_CHUNKS, onednn=True),
              'cpu, small chunks, MKL GEMMs': replace(SMALL_CHUNKS, onednn=False),
              'batched': 'batched',
              # training: the q/k/v kernel and its backward kernel
              'batched, fused Triton kernels': Request('batched', fused=True)}
# what torch.compile must trace: the cpu path with each GEMM library, and the batched path
COMPILED_PATHS = {'cpu, oneDNN GEMMs': Request('cpu', onednn=True),
                  'cpu, MKL GEMMs': Request('cpu', onednn=False), 'batched': 'batched'}


def small(execution='auto', **kw) -> SwinV2Backbone:
    if isinstance(execution, Request) and execution.fused and not hardware.INTERPRETED:
        pytest.skip(NOT_INTERPRETED)
    torch.manual_seed(0)
    return randomize_(SwinV2Backbone(**{**SMALL, **kw}, execution=execution)).eval()


def outputs_and_gradients(model: SwinV2Backbone, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inference outputs, and after a training step every parameter's and the input's
    gradient."""
    model.zero_grad()
    model.train()
    xg = x.clone().requires_grad_()
    outs = model(xg)
    sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
    result = {n: p.grad.clone() for n, p in model.named_parameters()}
    result['input'] = xg.grad
    with torch.no_grad():
        result['outputs'] = torch.cat([o.flatten() for o in model.eval()(x)])
    return result


@functools.lru_cache(maxsize=1)
def exact_reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two images of 75x61, and the reference path's outputs and gradients on them computed
    in float64 (float32 rounding at 1e-5 relative goes either way: for one gradient the
    float32 reference was 8.5e-6 from this, a fast path 4.7e-6 on the other side)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 75, 61)
    got = outputs_and_gradients(small('reference').double(), x.double())
    return x, {name: value.float() for name, value in got.items()}


@pytest.mark.parametrize('path', ['reference'] + list(FAST_PATHS))
def test_each_path_equals_the_reference_in_outputs_and_every_gradient(path):
    """Two images of 75x61: padded and shifted windows in every stage but the last, which
    shrinks its window to the map. Each path in float32 against the reference's float64
    result, the float32 reference too."""
    x, want = exact_reference()
    got = outputs_and_gradients(small(FAST_PATHS.get(path, path)), x)
    errors = rel_errs(want, got)
    assert {n: e for n, e in errors.items() if not e < 1e-5} == {}


@pytest.mark.parametrize('path', ['reference'] + list(FAST_PATHS))
@pytest.mark.parametrize('amp', [None, torch.bfloat16])
def test_with_cp_mlp_gives_what_keeping_every_activation_gives(path, amp):
    """``with_cp='mlp'`` recomputes each MLP's hidden layer in backward: the same outputs and
    gradients on every path (dropout on, for the reference path's ``torch.utils.checkpoint``,
    which must draw the same masks again), in float32 and under bf16 autocast."""
    x = torch.randn(2, 3, 75, 61)
    drop = dict(drop_rate=0.1) if path == 'reference' else {}
    got = {}
    for with_cp in (False, 'mlp'):
        model = small(FAST_PATHS.get(path, path), with_cp=with_cp, **drop)
        torch.manual_seed(1)  # the same dropout masks for both
        with torch.autocast('cpu', dtype=amp) if amp else nullcontext():
            got[with_cp] = outputs_and_gradients(model, x)
    errors = rel_errs(got[False], got['mlp'])
    assert {n: e for n, e in errors.items() if not e < 1e-5} == {}


def test_mlp_training_keeps_its_input_in_the_autocast_dtype_and_with_cp_nothing_else():
    """What the MLP saves for backward, by bytes: the input (in bf16 under bf16 autocast, not
    the float32 residual stream) and the fc1 output; with ``recompute`` the input only."""
    from swinv2_backbone.kernels.cpu import GeluMlp
    from swinv2_backbone.model.blocks import Mlp
    x = torch.randn(50, 16, requires_grad=True)
    execution = Execution('batched', grad=True, amp=torch.bfloat16, mlp_chunk_rows=None)
    saved = {}
    for recompute in (False, True):
        mlp = Mlp(16, 64, recompute=recompute).train()
        params = {p.data_ptr() for p in mlp.parameters()}
        seen = {}

        def pack(t):
            if t.data_ptr() not in params:
                seen[t.data_ptr()] = (t.dtype, tuple(t.shape))
            return t
        with torch.autocast('cpu', dtype=torch.bfloat16), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            GeluMlp.apply(x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
                          execution, recompute)[0].sum().backward()
        saved[recompute] = sorted(seen.values(), key=str)
    assert saved[False] == [(torch.bfloat16, (50, 16)), (torch.bfloat16, (50, 64))]
    assert saved[True] == [(torch.bfloat16, (50, 16))]


@pytest.mark.parametrize('path', list(FAST_PATHS))
def test_each_path_gives_each_image_its_own_features(path):
    model = small(FAST_PATHS[path])
    x = torch.randn(3, 3, 75, 101)
    with torch.no_grad():
        batched = model(x)
        for i in range(3):
            for b, a in zip(batched, model(x[i:i + 1])):
                torch.testing.assert_close(b[i:i + 1], a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('path', ['cpu', 'cpu, small chunks, oneDNN GEMMs'])
def test_cpu_inference_runs_the_mlp_on_the_maps_tokens_only(path, monkeypatch):
    """Padding tokens need no MLP (the stage zeroes them before the next block): the cpu path's
    inference gives each block's MLP the map's tokens only, in whole chunks or in chunks that
    end inside the padded windows, with the batched path's outputs; the batched path's MLPs
    see the padded windows."""
    from swinv2_backbone.kernels import cpu as cpu_kernels
    x = torch.randn(2, 3, 75, 61)  # maps 19x16, 10x8, 5x4, 3x2, each padded to its windows
    widths = [SMALL['arch']['embed_dim'] * 2 ** s for s in range(4)]
    seen = []  # (stage, tokens) of each fc1 GEMM: the GELU's input rows
    linear, gelu = cpu_kernels.linear, F.gelu

    def cpu_fc1(x, weight, bias, execution, gelu=False):
        if gelu:
            seen.append((widths.index(x.shape[-1]), x.numel() // x.shape[-1]))
        return linear(x, weight, bias, execution, gelu)

    def batched_gelu(h, *args, **kwargs):
        seen.append((widths.index(h.shape[-1] // 4), h.numel() // h.shape[-1]))
        return gelu(h, *args, **kwargs)
    monkeypatch.setattr(cpu_kernels, 'linear', cpu_fc1)
    monkeypatch.setattr(F, 'gelu', batched_gelu)

    def mlp_tokens(model):
        seen.clear()
        with torch.no_grad():
            outs = model(x)
        return outs, [sum(n for i, n in seen if i == s) for s in range(4)]

    cpu, tokens = mlp_tokens(small(FAST_PATHS[path]))
    batched, padded = mlp_tokens(small('batched'))
    depths, maps = SMALL['arch']['depths'], [(19, 16), (10, 8), (5, 4), (3, 2)]
    assert tokens == [2 * h * w * d for (h, w), d in zip(maps, depths)]
    assert padded[:2] == [2 * 20 * 16 * 1, 2 * 12 * 8 * 2]  # padded to windows of 4
    for a, b in zip(cpu, batched):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('path', ['cpu', 'batched'])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_gives_finite_gradients_close_to_fp32(dtype, path):
    """A training step under autocast (as AMP runs on GPUs), with zero-padded windows: finite,
    and every parameter's gradient points the way float32's does. fp16 overflowed
    1 / NORM_EPS for the padding's k once and gave NaN; the zero padding's k now passes no
    gradient (kernels.reference.inverse_norm)."""
    if dtype == torch.float16 and TORCH_VERSION < (2, 2):
        pytest.skip('CPU fp16 autocast of these ops needs torch >= 2.2')
    model = small(path).train()
    x = torch.randn(2, 3, 70, 90)
    weights = None
    grads = []
    for low in (False, True):
        model.zero_grad()
        with torch.autocast('cpu', dtype=dtype, enabled=low):
            outs = model(x)
        # random weights: the plain mean of a layer-norm output has no gradient upstream
        weights = weights or [torch.randn(o.shape) for o in outs]
        sum((o.float() * w).sum() for o, w in zip(outs, weights)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, want in grads[0].items():
        got = grads[1][name]
        assert torch.isfinite(got).all(), name
        cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        assert cos.item() > 0.95, (name, cos.item())


@pytest.mark.parametrize('path', ['cpu', 'batched', 'batched, fused Triton kernels'])
def test_bf16_autocast_inference_gives_finite_features_close_to_fp32(path):
    model = small(FAST_PATHS[path])
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    # the batched path runs the whole attention in bf16, as AMP does on GPUs (torch 2.1's CPU
    # SDPA: max 0.11); the cpu path keeps the q/k normalisation in float32
    worst = 0.15 if path.startswith('batched') else 0.1
    for a, b in zip(low, ref):
        assert torch.isfinite(a).all()
        err = (a.float() - b).abs() / b.std()
        assert err.max().item() < worst and err.pow(2).mean().sqrt().item() < 2e-2


@pytest.mark.skipif(not hardware.ONEDNN_BF16,
                    reason='this CPU has no oneDNN bf16 GEMM (it needs AVX-512 or AMX)')
def test_bf16_inference_keeps_the_position_bias_and_attention_in_float32():
    """Under bf16 autocast without autograd the cpu path rounds only the GEMMs to bf16. With
    bf16-exact weights and input and the largest temperature (100), one attention is then less
    than half as far from float32 as autocast's bf16 attention (the autograd path) is."""
    from swinv2_backbone.kernels.backends import ATTENTION_BACKENDS
    from swinv2_backbone.model.attention import WindowAttentionV2
    torch.manual_seed(0)
    attn = WindowAttentionV2(64, 4, 8).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.5).copy_(p.bfloat16())
        attn.logit_scale.fill_(math.log(100))
    x = torch.randn(6, 64, 64).bfloat16().float()

    def cpu_attention(x):  # the cpu path's attention and the output projection
        execution = decide('cpu', x, attn.parameters())
        qkv_bias, t, pos_bias = attn.logit_terms(8, execution)
        run = ATTENTION_BACKENDS[execution.attention_backend].run
        out, _ = run(x, attn.qkv.weight, qkv_bias, t, pos_bias, None, 4, 8, execution)
        return attn.proj(out.reshape(x.shape)), execution
    with torch.no_grad():
        ref = cpu_attention(x)[0]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            ours, execution = cpu_attention(x)
            assert execution.bf16_inference
            assert attn.position_bias(8, execution).dtype == torch.float32
    with torch.autocast('cpu', dtype=torch.bfloat16):
        bf16 = cpu_attention(x.requires_grad_())[0].detach()

    def rms(out):
        return ((out.float() - ref) / ref.std()).pow(2).mean().sqrt().item()
    assert 0 < rms(ours) < 0.5 * rms(bf16)


def test_bf16_stays_finite_at_the_papers_largest_resolution():
    model = SwinV2Backbone(arch=dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
                           window_size=16, pretrained_window_sizes=(8, 8, 8, 8))
    randomize_(model).eval()
    x = torch.randn(1, 3, 1536, 1536)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert [o.shape[-1] for o in outs] == [384, 192, 96, 48]
    assert all(torch.isfinite(o).all() for o in outs)


def test_a_model_made_under_inference_mode_runs_like_any_other():
    """Its weights have no version counters, which the position-bias cache reads."""
    model = small()
    x = torch.randn(1, 3, 64, 48)
    with torch.inference_mode():
        twin = small()
        twin.load_state_dict(model.state_dict())
        for bf16 in (False, True):
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
                for a, b in zip(twin(x), model(x)):
                    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------ the decision
def test_auto_runs_the_cpu_kernels_on_cpu_and_the_batched_path_elsewhere():
    model = small()
    assert decide('auto', torch.randn(1, 3, 8, 8), model.parameters()).path == 'cpu'
    meta = torch.randn(1, 3, 8, 8, device='meta')
    assert decide('auto', meta, model.parameters()).path == 'batched'
    with torch.no_grad():
        assert not decide('auto', torch.randn(1, 3, 8, 8), model.parameters()).grad
    model.train()
    assert decide('auto', torch.randn(1, 3, 8, 8), model.parameters(), dropout=True).dropout


def test_the_cpu_path_takes_onednn_gemms_only_where_this_cpu_gains_or_when_asked():
    model, x = small(), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert decide('cpu', x, model.parameters()).onednn == hardware.ONEDNN_FP32[False]
    # the model trains
    assert decide('cpu', x, model.parameters()).onednn == hardware.ONEDNN_FP32[True]
    for grad in (False, True):
        assert hardware.ONEDNN_FP32[grad] == (hardware.ONEDNN and hardware.gains_on(
            torch.backends.cpu.get_cpu_capability(), hardware.cpu_vendor(), grad))
        # AVX2 on AMD: oneDNN's GEMM in inference, MKL's in training
        assert [hardware.gains_on(c, 'AuthenticAMD', grad) for c in (
            'AVX2', 'AVX512', 'AVX512_BF16', 'DEFAULT')] == [not grad, True, True, False]
        assert not hardware.gains_on('AVX2', 'GenuineIntel', grad)
        assert hardware.gains_on('AVX512', '', grad)
    # MKL runs AVX-512 on Intel's own processors: there it keeps the backward's GEMMs
    assert hardware.gains_on('AVX512', 'GenuineIntel', False)
    assert not hardware.gains_on('AVX512', 'GenuineIntel', True)
    assert hardware.cpu_vendor('processor\t: 0\nvendor_id\t: AuthenticAMD\n') == 'AuthenticAMD'
    assert hardware.cpu_vendor('Intel64 Family 6 Model 85 Stepping 7, GenuineIntel') == \
        'GenuineIntel'
    assert hardware.cpu_vendor('arm') == ''
    assert decide(Request('cpu', onednn=True), x, model.parameters()).onednn == hardware.ONEDNN
    assert not decide(Request('cpu', onednn=False), x, model.parameters()).onednn
    assert not decide(Request('batched', onednn=True), x, model.parameters()).onednn
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not decide(Request('cpu', onednn=True), x, model.parameters()).onednn


def test_the_fused_kernels_run_only_on_the_batched_path_outside_compiling():
    """Default: on inputs of devices where Triton runs other than the CPU (CUDA; here: CPU and
    meta, so never); asked for: on CPU inputs too where Triton's interpreter runs, with
    autograd too; never on other paths."""
    model, x = small(), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert not decide('batched', x, model.parameters()).fused
        assert not decide('batched', x.to('meta'), small().to('meta').parameters()).fused
        assert decide(Request('batched', fused=True), x,
                      model.parameters()).fused == hardware.INTERPRETED
        assert not decide(Request('batched', fused=False), x, model.parameters()).fused
        assert not decide(Request('batched', fused=True), x.double(),
                          model.double().parameters()).fused
        assert hardware.triton_runs_on(torch.device('cpu')) == hardware.INTERPRETED
        assert not hardware.triton_runs_on(torch.device('meta'))
        for path in ('cpu', 'reference'):
            assert not decide(Request(path, fused=True), x, model.parameters()).fused
    assert torch.is_grad_enabled() and decide(Request('batched', fused=True), x,
                                              model.parameters()).fused == hardware.INTERPRETED


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_fused_kernels_under_autocast_are_as_close_to_float32_as_the_batched_path(dtype):
    """fp16 / bf16 autocast inference with zero-padded windows, both paths against the float32
    forward: finite, and within the same bounds (max and rms error over the features' std;
    measured 0.071 / 0.0085 in bf16 and 0.010 / 0.0010 in fp16 for both)."""
    if dtype == torch.float16 and TORCH_VERSION < (2, 2):
        pytest.skip('CPU fp16 autocast of these ops needs torch >= 2.2')
    worst, rms = (0.1, 0.012) if dtype == torch.bfloat16 else (0.015, 0.0015)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 75, 61)
    with torch.no_grad():
        ref = small('batched')(x)
        for execution in ('batched', FAST_PATHS['batched, fused Triton kernels']):
            with torch.autocast('cpu', dtype=dtype):
                low = small(execution)(x)
            for a, b in zip(low, ref):
                assert torch.isfinite(a).all()
                err = (a.float() - b).abs() / b.std()
                assert err.max().item() < worst and err.pow(2).mean().sqrt().item() < rms, \
                    (execution, err.max().item(), err.pow(2).mean().sqrt().item())


def test_the_cpu_kernels_refuse_other_devices_by_name():
    model = small('cpu').to('meta')
    with pytest.raises(ValueError, match="execution='cpu' runs CPU kernels, but the input is "
                                         'on meta'):
        model(torch.randn(1, 3, 32, 32, device='meta'))


def test_runs_off_cpu_on_the_meta_device():
    """No GPU here: the meta device takes the path other devices take (batched: F.linear and
    one SDPA per block) and fails on any tensor left on the CPU."""
    model = small().to('meta')
    x = torch.randn(2, 3, 70, 90, device='meta')
    want = [(2, 32, 18, 23), (2, 64, 9, 12), (2, 128, 5, 6), (2, 256, 3, 3)]
    for train in (False, True):
        model.train(train)
        with torch.set_grad_enabled(train):
            outs = model(x)
        assert [tuple(o.shape) for o in outs] == want
        assert all(o.device.type == 'meta' for o in outs)
        if train:
            sum(o.sum() for o in outs).backward()
            assert all(p.grad is not None and p.grad.device.type == 'meta'
                       for p in model.parameters())


# ------------------------------------------------------------------ torch.compile
# tested with torch 2.14 here and 2.11 on a GPU, and once with 2.6.0 and 2.8.0 on the CPU;
# torch 2.5's dynamo cannot trace training (out= and dataclasses.replace inside the autograd
# functions); torch 2.1's cannot construct the Execution (a frozen dataclass) and fails on
# bmm(out=) with symbolic sizes
needs_compile = pytest.mark.skipif(TORCH_VERSION < (2, 6),
                                   reason='torch.compile of the backbone needs torch >= 2.6')


@needs_compile
def test_compiling_is_not_exporting_and_torch_export_is():
    """``compat.is_exporting`` (the export path) is False in ``torch.compile`` and True in
    ``torch.export``: torch 2.8's dynamo answered ``torch.compiler.is_exporting()`` True in
    both, which sent compiled forwards down the export path."""
    from swinv2_backbone.compat import TORCH_EXPORT_SEEN, is_exporting

    class Probe(torch.nn.Module):
        def forward(self, x):
            return x + 1 if is_exporting() else x - 1
    x = torch.zeros(1)
    assert torch.compile(Probe(), backend='eager', fullgraph=True)(x).item() == -1
    if TORCH_EXPORT_SEEN:  # torch 2.6 has no flag to say so
        assert torch.export.export(Probe(), (x,)).module()(x).item() == 1


@needs_compile
@pytest.mark.parametrize('path', list(COMPILED_PATHS))
@pytest.mark.parametrize('train', [False, True])
def test_compiles_as_one_graph_without_breaks(train, path):
    import torch._dynamo as dynamo
    model = small(COMPILED_PATHS[path], drop_path_rate=0.1).train(train)
    with torch.set_grad_enabled(train):
        explained = dynamo.explain(model)(torch.randn(1, 3, 70, 90))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, \
        [b.reason for b in explained.break_reasons]


@needs_compile
@pytest.mark.parametrize('train', [False, True])
def test_compiles_as_one_graph_under_bf16_autocast(train):
    """bf16 autocast inference, as used with compile, traces without graph breaks too; so
    does AMP training on the batched path, with its autograd functions (``AmpLayerNorm``,
    ``QkvHeads``, ``ResidualLinear``, ``GeluMlp`` recomputing under ``with_cp='mlp'``, the
    stage's gathers, the temperature and the CPB)."""
    import torch._dynamo as dynamo
    model = small('batched', with_cp='mlp').train() if train else small()
    with torch.set_grad_enabled(train), torch.autocast('cpu', dtype=torch.bfloat16):
        explained = dynamo.explain(model)(torch.randn(1, 3, 70, 90))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, \
        [b.reason for b in explained.break_reasons]


@needs_compile
def test_inductor_compiles_the_cpu_path_in_float32_and_bf16_autocast():
    """torch.compile's default backend (inductor, which builds C++ kernels) on the cpu path:
    float32 equals eager, bf16 autocast stays within bf16's rounding of float32. oneDNN's
    linear op, which inductor lowers only for constant weights, is not used while compiling
    (it failed with "weight must be a graph constant")."""
    model = small(COMPILED_PATHS['cpu, oneDNN GEMMs'])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, fullgraph=True, dynamic=False)(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = torch.compile(model, fullgraph=True, dynamic=False)(x)
    for g, w, b in zip(got, want, low):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * w.std().item())
        err = (b.float() - w).abs() / w.std()
        assert err.max() <= 0.1 and err.pow(2).mean().sqrt() <= 0.02, err.max()


@needs_compile
@pytest.mark.parametrize('path', list(COMPILED_PATHS))
def test_compiled_model_matches_eager_at_several_sizes(path):
    # dynamic=False: a new size recompiles (symbolic sizes send dynamo into minutes of sympy)
    model = small(COMPILED_PATHS[path])
    compiled = torch.compile(model, backend='eager', fullgraph=True, dynamic=False)
    with torch.no_grad():
        for size in ((64, 64), (70, 90)):
            x = torch.randn(1, 3, *size)
            for a, b in zip(compiled(x), model(x)):
                torch.testing.assert_close(a, b)
