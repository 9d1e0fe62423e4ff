"""The kernels on their own: each against PyTorch's plain ops or finite differences."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinv2_backbone.runtime.execution import Execution
from swinv2_backbone import hardware
from swinv2_backbone.kernels import cpu, device, fused, onednn
from swinv2_backbone.kernels.reference import inverse_norm

from devkit.testing import NOT_INTERPRETED, randomize_

CPU = Execution('cpu', onednn=hardware.ONEDNN)


def _windows(images=2, nW=4, h=2, N=4, d=3, dtype=torch.float64):
    """Random tokens, qkv weights, temperature, position bias and shift mask."""
    torch.manual_seed(0)
    kw = dict(dtype=dtype, requires_grad=True)
    C = h * d
    return dict(x=torch.randn(images * nW, N, C, **kw), weight=torch.randn(3 * C, C, **kw),
                qkv_bias=torch.randn(3 * C, **kw),
                temperature=(torch.rand(h, dtype=dtype) * 5 + 1).requires_grad_(),
                pos_bias=torch.randn(h, N, N, **kw),
                mask=(torch.rand(nW, N, N) > 0.7).to(dtype) * -100)


def _plain_attention(x, weight, qkv_bias, temperature, pos_bias, mask, heads):
    """The official code's ops: F.normalize, matmul, softmax, matmul; (B_, N, C)."""
    B_, N, C = x.shape
    q, k, v = F.linear(x, weight, qkv_bias).view(B_, N, 3, heads, -1).permute(2, 0, 3, 1, 4)
    attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    attn = attn * temperature.view(-1, 1, 1) + pos_bias
    if mask is not None:
        attn = attn + mask.repeat(B_ // mask.shape[0], 1, 1).unsqueeze(1)
    return (attn.softmax(-1) @ v).transpose(1, 2).reshape(B_, N, C)


@pytest.mark.parametrize('hot', [False, True])
def test_cosine_attention_backward_passes_gradcheck(hot):
    """Finite differences in float64 against CosineAttention's hand-written backward, for x,
    the qkv weight and bias, the temperature and the position bias, with a shift mask and
    chunks of 3 windows over 2 images of 4 windows; ``hot``: one head's temperature above
    ``TAME_TEMPERATURE`` (its mask kept at -100, the other's times 100)."""
    a = _windows()
    if hot:
        with torch.no_grad():
            a['temperature'][1] = cpu.TAME_TEMPERATURE + 5
    assert cpu.mask_scales(a['temperature']) == ([100, 1] if hot else [100, 100])
    execution = Execution('cpu', train_chunk_tokens=12)
    assert torch.autograd.gradcheck(
        lambda *t: cpu.CosineAttention.apply(*t, a['mask'], 2, execution),
        (a['x'], a['weight'], a['qkv_bias'], a['temperature'], a['pos_bias']))


@pytest.mark.parametrize('recompute', [False, True])
def test_gelu_mlp_backward_passes_gradcheck(recompute):
    torch.manual_seed(0)
    kw = dict(dtype=torch.float64, requires_grad=True)
    args = (torch.randn(7, 4, **kw), torch.randn(16, 4, **kw), torch.randn(16, **kw),
            torch.randn(4, 16, **kw), torch.randn(4, **kw))
    execution = Execution('cpu', mlp_chunk_rows=3)
    assert torch.autograd.gradcheck(lambda *t: cpu.GeluMlp.apply(*t, execution, recompute), args)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_amp_layer_norm_is_autocasts_float32_norm_keeping_the_input_in_its_dtype(dtype):
    """The same output and gradients as ``F.layer_norm`` of the float32 copy (what autocast
    runs on GPUs), bit for bit; what it keeps for backward is the fp16/bf16 input, not a
    float32 copy."""
    torch.manual_seed(0)
    x = (torch.randn(37, 24) * 3 + 1).to(dtype).requires_grad_()
    weight, bias = (torch.randn(24, requires_grad=True) for _ in range(2))
    grad = torch.randn(37, 24)
    saved = []

    def pack(t):
        saved.append((t.dtype, tuple(t.shape)))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = device.AmpLayerNorm.apply(x, weight, bias, 1e-5)
    got = [out, *torch.autograd.grad(out, (x, weight, bias), grad)]
    want = F.layer_norm(x.float(), (24,), weight, bias, 1e-5)
    want = [want, *torch.autograd.grad(want, (x, weight, bias), grad)]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w)
    assert (dtype, (37, 24)) in saved and (torch.float32, (37, 24)) not in saved


@pytest.mark.parametrize('images', [1, 3])
def test_attend_matches_pytorch_sdpa_with_masks_and_chunks(images):
    """attend against F.scaled_dot_product_attention with the shift mask of several images,
    bmm-softmax-bmm 3 windows at a time (chunk edges inside images)."""
    torch.manual_seed(0)
    nW, h, N, d = 4, 2, 16, 8
    q, k, v = (torch.randn(images * nW, h, N, d) for _ in range(3))
    bias, mask = torch.randn(h, N, N), torch.randn(nW, N, N)
    for m in (None, mask):
        full = bias if m is None else bias + m.repeat(images, 1, 1).unsqueeze(1)
        want = F.scaled_dot_product_attention(
            q, k, v, attn_mask=full.expand(images * nW, h, N, N), scale=1.0)
        got = cpu.attend(q.clone(), k, v, bias, m, chunk_logits=3 * h * N * N)
        torch.testing.assert_close(got, want.transpose(1, 2).reshape(images * nW, N, h * d),
                                   rtol=1e-5, atol=1e-5)
        # a bf16 v (bf16 inference): the float32 logits and softmax, then P rounded to bf16
        # once and P @ V in bf16; against SDPA in float32 on the same bf16 v
        v16 = v.bfloat16()
        got = cpu.attend(q.clone(), k, v16, bias, m, chunk_logits=3 * h * N * N)
        want = F.scaled_dot_product_attention(
            q, k, v16.float(), attn_mask=full.expand(images * nW, h, N, N), scale=1.0)
        assert got.dtype == torch.bfloat16
        err = (got.float() - want.transpose(1, 2).reshape(got.shape)).abs().max()
        assert err <= 2 ** -7 * want.abs().max(), err  # a bf16 rounding or two of the largest


@pytest.mark.parametrize('shifted,tokens', [(False, 'windows'), (True, 'windows'),
                                            (True, 'positions')])
def test_device_window_attention_equals_the_official_ops_with_gradients(shifted, tokens):
    """The batched kernel in float64 against F.normalize / matmul / softmax: output and the
    gradients of x, the weights, the temperature and the position bias; with zero tokens
    (padding), whose k has norm 0: there F.normalize's gradient is dy / eps, which the kernel
    does not pass (the padding's gradient is discarded by the stage), so x's gradient is
    compared on the other tokens. Tokens window by window, or by position in the window."""
    a = _windows(images=3, N=9)
    mask = a.pop('mask') if shifted else None
    a.pop('mask', None)
    with torch.no_grad():
        a['x'][:, -2:] = 0  # the last two tokens of each window are zero padding
        a['qkv_bias'][6:12] = 0  # SwinV2 has no k bias
    B, nW, N, C = 3, 4, 9, 6
    grads = []
    for fn in ('device', 'plain'):
        if fn == 'device':
            x = a['x'].view(B, nW, N, C)
            x = x.transpose(1, 2) if tokens == 'positions' else x
            out, residual = device.window_attention(
                x.reshape(B, nW * N, C), a['weight'], a['qkv_bias'],
                a['temperature'].view(-1, 1, 1), a['pos_bias'], mask, 2, tokens=tokens)
            out = out + residual  # the residual's gradient goes in through the projection's
            out = out.view(B, N, nW, C).transpose(1, 2) if tokens == 'positions' else out
            out = out.reshape(-1, N, C)
        else:
            out = _plain_attention(a['x'], a['weight'], a['qkv_bias'], a['temperature'],
                                   a['pos_bias'], mask, 2) + a['x']
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([out.detach()] + [t.grad.clone() for t in a.values()])
        for t in a.values():
            t.grad = None
    got, want = grads
    got[1], want[1] = got[1][:, :-2], want[1][:, :-2]  # x: the non-padding tokens
    got[3], want[3] = got[3][[*range(6), *range(12, 18)]], want[3][[*range(6), *range(12, 18)]]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


def test_inverse_norm_is_f_normalize_and_passes_no_gradient_through_zero_vectors():
    t = torch.randn(5, 7, dtype=torch.float64)
    t[2] = 0
    t.requires_grad_()
    unit = t * inverse_norm(t)
    torch.testing.assert_close(unit, F.normalize(t, dim=-1))
    unit.sum().backward()
    assert torch.equal(t.grad[2], torch.zeros(7, dtype=torch.float64))
    assert torch.isfinite(t.grad).all() and t.grad[0].abs().sum() > 0
    assert inverse_norm(torch.randn(3, 4).half()).dtype == torch.float32


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_inverse_norm_is_zero_at_or_below_the_epsilon(dtype):
    """Zero for a zero vector and one below the epsilon, the reciprocal for one just above."""
    t = torch.randn(5, 7, dtype=dtype)
    t[2] = 0
    t[3] = torch.full((7,), 1e-14, dtype=dtype)  # norm below NORM_EPS
    t[4] = torch.full((7,), 1e-12, dtype=dtype)  # norm 2.6e-12: above it
    got = inverse_norm(t)
    assert got[2].item() == got[3].item() == 0
    torch.testing.assert_close(got[[0, 1, 4]], 1 / t[[0, 1, 4]].norm(dim=-1, keepdim=True))


def test_position_bias_and_temperature_backward_pass_gradcheck():
    """The CPB's and the temperature's autograd functions in float64, a logit scale above the
    clamp among them (no gradient there), a gather with repeated entries."""
    from swinv2_backbone.kernels import reference
    torch.manual_seed(0)
    kw = dict(dtype=torch.float64, requires_grad=True)
    table = torch.randn(9, 2, dtype=torch.float64)
    index = torch.randint(0, 9, (16,))
    w1, b1, w2 = torch.randn(5, 2, **kw), torch.randn(5, **kw), torch.randn(3, 5, **kw)
    assert torch.autograd.gradcheck(
        lambda *w: reference.PositionBias.apply(table, index, *w), (w1, b1, w2))
    torch.testing.assert_close(reference.PositionBias.apply(table, index, w1, b1, w2),
                               reference.position_bias(table, index, w1, b1, w2))
    logit_scale = torch.tensor([[[1.0]], [[5.0]], [[-2.0]]], **kw)  # 5 > log(100)
    assert torch.autograd.gradcheck(reference.Temperature.apply, (logit_scale,))
    grad, = torch.autograd.grad(reference.Temperature.apply(logit_scale).sum(), logit_scale)
    assert grad[1].item() == 0 and grad[0].item() > 0


@pytest.mark.parametrize('used', [True, False])
def test_residual_linear_backward_passes_gradcheck(used):
    """The projection that returns its input for the residual: its backward adds the
    residual's gradient into the input's (or has none to add, where the copy goes unused)."""
    torch.manual_seed(0)
    kw = dict(dtype=torch.float64, requires_grad=True)
    args = (torch.randn(2, 5, 4, **kw), torch.randn(6, 4, **kw), torch.randn(6, **kw))

    def fn(*t):
        y, x = device.ResidualLinear.apply(*t, None)
        return (y, x * 3) if used else y
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize('tokens', ['windows', 'positions'])
def test_qkv_heads_backward_passes_gradcheck(tokens):
    """QkvHeads, the batched path's q/k normalisation with its hand-written backward, in
    float64: the projection's gradient in its layout and the temperature's."""
    torch.manual_seed(0)
    B, nW, N, h, d = 2, 3, 4, 2, 3
    qkv = torch.randn(B, nW * N, 3 * h * d, dtype=torch.float64, requires_grad=True)
    temperature = (torch.rand(h, 1, 1, dtype=torch.float64) * 5 + 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, t: device.QkvHeads.apply(x, t, h, N, tokens), (qkv, temperature))


# ------------------------------------------------------------------ oneDNN linear
@pytest.mark.skipif(not hardware.ONEDNN, reason='this PyTorch has no oneDNN linear op')
@pytest.mark.parametrize('gelu', [False, True])
def test_onednn_linear_matches_f_linear_with_gradients(gelu):
    torch.manual_seed(0)
    x = torch.randn(2, 37, 24, requires_grad=True)  # 3-D input, odd row count
    w = (torch.randn(40, 24) * 0.2).requires_grad_()
    b = torch.randn(40, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(onednn.linear(x, w, b, CPU, gelu=gelu),
                                   F.gelu(F.linear(x, w, b)) if gelu else F.linear(x, w, b),
                                   rtol=1e-5, atol=1e-5)
    grads = []
    train = Execution('cpu', onednn=True, grad=True)
    for fn in (lambda *a, gelu: onednn.linear(*a, train, gelu=gelu),
               lambda *a, gelu: F.gelu(F.linear(*a)) if gelu else F.linear(*a)):
        out = fn(x, w, b, gelu=gelu)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad.clone() for t in (x, w, b)])
        for t in (x, w, b):
            t.grad = None
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_takes_f_linear_where_onednn_does_not_apply():
    x, w = torch.randn(3, 8), torch.randn(4, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # the policy: no oneDNN under autocast
        assert onednn.linear(x, w, None, Execution('cpu')).dtype == torch.bfloat16
    torch.testing.assert_close(onednn.linear(x.double(), w.double(), None, CPU),
                               F.linear(x, w).double(), rtol=1e-5, atol=1e-5)


def test_tame_heads_shortcuts_equal_the_reference_and_only_there():
    """Heads whose temperature is at most ``TAME_TEMPERATURE`` get the shift mask times 100 on
    the cpu path, and where every head is tame the softmax is not flushed. The worst case of
    the bound: every masked key along q with the largest position bias, every other key
    against it without. There the result equals the reference's -100 mask to float32
    rounding, and every probability is a normal number; a hotter head keeps the -100 (in a
    block with tame heads too), where a hard mask would change the result."""
    nW, h, N, d = 2, 2, 16, 4
    q = torch.zeros(nW, h, N, d, dtype=torch.float64)
    q[..., 0] = 1
    k, v = -q.clone(), torch.randn(nW, h, N, d, dtype=torch.float64)
    region = torch.arange(N) >= N // 2
    mask = (region[:, None] != region[None, :]).double().expand(nW, N, N) * -100
    k[:, :, region] *= -1  # the other region's keys along q: cos = 1; the own region's: -1
    bias = torch.zeros(h, N, N, dtype=torch.float64)
    bias[:, :N // 2, N // 2:] = 16
    tame, hot = cpu.TAME_TEMPERATURE, 40.0
    for temps, want_scales in (((tame, tame), [100, 100]), ((hot, hot), [1, 1]),
                               ((tame, hot), [100, 1])):
        t = torch.tensor(temps, dtype=torch.float64).view(h, 1, 1)
        assert cpu.mask_scales(t) == want_scales
        assert cpu.mask_scales(t, compiling=True) == [1, 1]

        def attend(scales):
            out = cpu.attend(q.float() * t.float(), k.float(), v.float(), bias.float(),
                             mask.float(), chunk_logits=h * N * N, scales=scales)
            return out.double()

        logits = t * q @ k.transpose(-2, -1) + bias + mask.unsqueeze(1)
        want = (logits.softmax(-1) @ v).transpose(1, 2).reshape(nW, N, h * d)
        # the first region's queries see the other region's keys with weight e^(2t+16-100)
        err = ((attend(want_scales) - want).abs().max() / v.abs().max()).item()
        assert err < 2 ** -22, (temps, err)
        if temps == (tame, tame):  # unmasked, the logits span 2t + 16: all probabilities normal
            p = (t * q @ k.transpose(-2, -1) + bias).float().softmax(-1)
            assert p.min() >= torch.finfo(torch.float32).tiny, p.min()
        else:  # the bound is needed: a hard mask on the hot head drops what the -100 keeps
            err = ((attend([100, 100]) - want).abs().max() / v.abs().max()).item()
            assert err > 1e-3, err


@pytest.mark.skipif(not hardware.ONEDNN_BF16, reason="this CPU has no oneDNN bf16 GEMM (it needs "
                    'AVX-512 or AMX)')
@pytest.mark.parametrize('gelu', [False, True])
def test_bf16_inference_linear_is_a_bf16_gemm_on_the_rounded_operands(gelu):
    """Under bf16 autocast without autograd: bf16 output, equal to float32 arithmetic on the
    bf16-rounded input and weight (oneDNN accumulates in float32); the float32 bias is kept."""
    from swinv2_backbone.runtime.execution import decide
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 37, 64), torch.randn(48, 64) * 0.2, torch.randn(48)
    want = F.linear(x.bfloat16().float(), w.bfloat16().float(), b)
    want = F.gelu(want) if gelu else want
    module = torch.nn.Linear(1, 1).requires_grad_(False)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        execution = decide('cpu', x, module.parameters())
        assert execution.bf16_inference
        got = onednn.linear(x, w, b, execution, gelu=gelu)
    assert got.dtype == torch.bfloat16
    # the output is rounded to bf16 once: relative error below 2^-8
    torch.testing.assert_close(got.float(), want, rtol=2 ** -8, atol=1e-3)
    assert not torch.equal(got.float(), F.linear(x, w, b))  # really computed in bf16
    with torch.autocast('cpu', dtype=torch.bfloat16):  # autograd: autocast's F.linear
        assert not decide('cpu', x.requires_grad_(), module.parameters()).bf16_inference


@pytest.mark.parametrize('block', [40, 10 ** 6])
def test_channels_first_is_the_contiguous_permute_in_blocks_of_rows(monkeypatch, block):
    """The cpu path's NCHW copy of a stage's map: blocks of rows that do not divide the
    height (40 elements: one 7 x 5 row at a time), or the whole map at once."""
    monkeypatch.setattr(cpu, '_TRANSPOSE_BLOCK', block)
    y = torch.randn(2, 13, 7, 5)
    got = cpu.channels_first(y, CPU)
    assert got.is_contiguous() and torch.equal(got, y.permute(0, 3, 1, 2))
    y = torch.randn(1, 9, 4, 6)[:, 1:]  # a cropped view, as a padded map's output is
    assert torch.equal(cpu.channels_first(y, CPU), y.permute(0, 3, 1, 2))


def test_softmax_sets_only_subnormal_probabilities_to_zero():
    """The shift mask's -100 gives probabilities of about 4e-44, subnormal in float32 (slow
    operands on Intel cores): ``flushed_softmax`` zeroes exactly those, the rest is softmax's."""
    torch.manual_seed(0)
    logits = torch.randn(6, 16, 16) * 3
    logits[:, :8, 8:] -= 100
    plain = logits.softmax(-1)
    tiny = torch.finfo(torch.float32).tiny
    subnormal = (plain > 0) & (plain < tiny)
    assert subnormal.any()  # the case it is for
    got = cpu.flushed_softmax(logits.clone())
    assert torch.equal(got[subnormal], torch.zeros(int(subnormal.sum())))
    assert torch.equal(got[~subnormal], plain[~subnormal])
    buffer = torch.empty_like(logits)
    assert cpu.flushed_softmax(logits, out=buffer) is buffer and torch.equal(buffer, got)


@pytest.mark.skipif(not hardware.ONEDNN_BF16, reason="this CPU has no oneDNN bf16 GEMM (it needs "
                    'AVX-512 or AMX)')
def test_bf16_inference_packs_each_weight_once_and_follows_new_weights():
    """bf16 inference keeps each weight packed in bf16 while it is unchanged; an in-place
    change (an optimizer step, load_state_dict) is seen by the next forward."""
    from swinv2_backbone import SwinV2Backbone
    kw = dict(arch=dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8)),
              window_size=4, drop_path_rate=0.0)
    model = randomize_(SwinV2Backbone(**kw)).eval()
    qkv = model.stages[1].blocks[0].attn.qkv.weight
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        first = model(x)
        packed = onednn._BF16_WEIGHTS[qkv][1]
        assert model(x)[1].equal(first[1]) and onednn._BF16_WEIGHTS[qkv][1] is packed
        qkv.mul_(2)
        second = model(x)
        assert onednn._BF16_WEIGHTS[qkv][1] is not packed
        fresh = SwinV2Backbone(**kw).eval()
        fresh.load_state_dict(model.state_dict())
        want = fresh(x)
    assert not torch.equal(first[1], second[1])
    for got, expected in zip(second, want):
        assert torch.equal(got, expected)
    with torch.inference_mode():  # weights made here have no version counter: not kept
        weight = torch.randn(8, 16)
        assert onednn.bf16_weight(weight, True, 4).layout == torch.strided
        assert weight not in onednn._BF16_WEIGHTS


# ------------------------------------------------------------------ position bias cache
@pytest.mark.parametrize('weight', ['cpb_mlp.2.weight', 'logit_scale', 'q_bias', 'v_bias'])
def test_eval_cache_of_the_logit_terms_follows_new_weights(weight):
    """Position bias, temperature and qkv bias are cached in eval mode; an in-place change of
    any weight they come from (as load_state_dict or an optimizer step makes) is seen."""
    from swinv2_backbone import SwinV2Backbone
    kw = dict(arch=dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8)),
              window_size=4, drop_path_rate=0.0)
    model = randomize_(SwinV2Backbone(**kw)).eval()
    attn = model.stages[0].blocks[0].attn
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        first = model(x)[0]
        cached = attn._terms_cache[1]
        assert attn.logit_terms(4, Execution('cpu')) is cached  # reused while unchanged
        attn.get_parameter(weight).mul_(2)  # in place, as load_state_dict does
        second = model(x)[0]
    assert attn._terms_cache[1] is not cached
    assert not torch.allclose(first, second)
    with torch.no_grad():
        third = SwinV2Backbone(**kw).eval()
        third.load_state_dict(model.state_dict())
        assert torch.equal(third(x)[0], second)


# ------------------------------------------------------------------ fused Triton kernels
needs_triton = pytest.mark.skipif(not hardware.INTERPRETED, reason=NOT_INTERPRETED)
ULP = {torch.float32: 2.0 ** -23, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


@needs_triton
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('d,tokens', [(32, 'windows'), (24, 'windows'), (32, 'positions')])
def test_qkv_heads_is_the_unit_q_k_and_v_of_the_batched_path_in_sdpas_layout(dtype, d, tokens):
    """Against QkvHeads (the unfused path): q, k and v of every window and head,
    within two rounding steps of the dtype (the norms sum in another order), for head dims of
    a power of two and not (masked lanes), more tokens than one program holds, and a zero k
    (the padding's: it maps to zero)."""
    torch.manual_seed(0)
    B, nW, N, h = 2, 7, 64, 3
    C = h * d
    qkv = torch.randn(B, nW * N, 3 * C).to(dtype)
    qkv[1, 5, C:2 * C] = 0
    temperature = torch.rand(h, 1, 1) * 30 + 1
    got = fused.qkv_heads(qkv, temperature, h, N, tokens=tokens)
    want = device.QkvHeads.apply(qkv, temperature, h, N, tokens)
    for g, w, scale in zip(got, want, (temperature.max().item(), 1.0, 4.0)):
        assert g.shape == (B * nW, h, N, d) and g.dtype == dtype and g.is_contiguous()
        g = g.view(B, nW, h, N, d)
        torch.testing.assert_close(g.float(), w.float(), rtol=0, atol=2 * scale * ULP[dtype])
    w, n = (0, 5) if tokens == 'windows' else (5, 0)  # the zero k's window and position
    assert torch.equal(got[1].view(B, nW, h, N, d)[1, w, :, n], torch.zeros(h, d, dtype=dtype))


@needs_triton
@pytest.mark.parametrize('layout,tokens', [('plain', 'windows'), ('shifted', 'windows'),
                                           ('shifted', 'positions')])
@pytest.mark.parametrize('d', [32, 24])
def test_qkv_heads_backward_is_the_unfused_ones_through_strided_gradients(layout, tokens, d):
    """The backward kernel against QkvHeads' (the unfused path): the
    gradients of the projection (a zero k passes none) and of the temperature, fed as SDPA's
    fused kernels give them on GPUs: packed in one (B, N, 3, heads, d) buffer, so strided, in
    the plain windows' (B*nW, heads, N, d) or the shifted windows' (B, nW*heads, N, d)
    layout; more tokens than one program holds, a head dim of a power of two and not."""
    torch.manual_seed(0)
    B, nW, N, h = 2, 7, 64, 3
    C = h * d
    qkv = torch.randn(B, nW * N, 3 * C)
    qkv[1, 5, C:2 * C] = 0
    temperature = torch.rand(h, 1, 1) * 30 + 1
    heads, windows = (h, B * nW) if layout == 'plain' else (nW * h, B)
    packed = torch.randn(windows, N, 3, heads, d)  # SDPA's gradient buffer
    grads = [packed[:, :, i].transpose(1, 2) for i in range(3)]  # (windows, heads, N, d)
    results = []
    for fn in ('fused', 'unfused'):
        x, t = qkv.clone().requires_grad_(), temperature.clone().requires_grad_()
        if fn == 'fused':
            outs = fused.qkv_heads(x, t, h, N, grad=True, tokens=tokens)
        else:
            outs = device.QkvHeads.apply(x, t, h, N, tokens)
        outs = [o.reshape(windows, heads, N, d) for o in outs]
        results.append(torch.autograd.grad(outs, (x, t), grads))
    (dx, dt), (want_dx, want_dt) = results
    torch.testing.assert_close(dx, want_dx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dt, want_dt, rtol=1e-5, atol=1e-4)
    assert torch.equal(dx[1, 5, C:2 * C], torch.zeros(C))


@needs_triton
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('C', [96, 100])
def test_add_layer_norm_adds_autocasts_float32_norm_into_the_residual_stream(dtype, C):
    """``x += LayerNorm(y)`` in place, against F.layer_norm of y in float32 plus x (what
    autocast runs on GPUs), for widths of a power of two and not and more rows than one
    program holds; the residual stream in float32, or in y's dtype (a model cast to it)."""
    torch.manual_seed(0)
    norm = randomize_(torch.nn.LayerNorm(C))
    y = torch.randn(3, 70, C).to(dtype)
    for x_dtype in {torch.float32, dtype}:
        x = torch.randn(3, 70, C).to(x_dtype)
        want = (x.float() + F.layer_norm(y.float(), (C,), norm.weight, norm.bias, norm.eps))
        got = x.clone()
        assert fused.add_layer_norm_(got, y, norm).data_ptr() == got.data_ptr()
        assert got.dtype == x_dtype
        tol = 1e-5 if x_dtype == torch.float32 else want.abs().max().item() * ULP[x_dtype]
        torch.testing.assert_close(got.float(), want.detach(), rtol=0, atol=tol)


@needs_triton
def test_add_layer_norm_refuses_a_strided_or_mismatched_residual_by_shape():
    norm = torch.nn.LayerNorm(8)
    with pytest.raises(ValueError, match=r'contiguous x .* got \(8, 4\) \(contiguous: False\)'):
        fused.add_layer_norm_(torch.randn(4, 8).t(), torch.randn(8, 4), norm)
    with pytest.raises(ValueError, match=r'got \(4, 8\) .* and \(4, 9\)'):
        fused.add_layer_norm_(torch.randn(4, 8), torch.randn(4, 9), norm)
