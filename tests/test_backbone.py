"""SwinV2Backbone behaviour: contract, any input size, windows, freezing, registration, errors."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from swinv2_backbone import SwinV2Backbone

from conftest import randomize_

SMALL = dict(arch=dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8)),
             window_size=4, drop_path_rate=0.0)


def small(**kw) -> SwinV2Backbone:
    return randomize_(SwinV2Backbone(**{**SMALL, **kw})).eval()


@pytest.mark.parametrize('size', [(4, 4), (5, 7), (31, 17), (97, 61), (64, 200), (130, 33)])
def test_output_shapes_follow_declared_contract_at_any_size(size):
    model = small(out_features=['stem', 'stage1', 'stage2', 'stage3', 'stage4'])
    H, W = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, H, W))
    assert len(outs) == len(model.out_channels) == len(model.out_strides) == 5
    for out, c, s in zip(outs, model.out_channels, model.out_strides):
        assert out.shape == (2, c, -(-H // s), -(-W // s))
        assert torch.isfinite(out).all()


def test_contract_for_presets_and_out_indices():
    model = SwinV2Backbone('base', out_indices=(1, 3))
    assert model.out_channels == (256, 1024) and model.out_strides == (8, 32)
    assert model.out_features == ('stage2', 'stage4') and model.out_indices == (1, 3)
    model = SwinV2Backbone('tiny', out_features=['stage4', 'stem'])
    assert model.out_features == ('stem', 'stage4') and model.out_channels == (96, 768)


def test_out_indices_and_out_features_that_agree_are_accepted():
    model = SwinV2Backbone(**SMALL, out_indices=(0, 2), out_features=('stage1', 'stage3'))
    assert model.out_indices == (0, 2)


def test_batch_invariance_each_image_gives_its_own_features():
    model = small()
    x = torch.randn(3, 3, 75, 101)
    with torch.no_grad():
        batched = model(x)
        for i in range(3):
            alone = model(x[i:i + 1])
            for b, a in zip(batched, alone):
                torch.testing.assert_close(b[i:i + 1], a, rtol=1e-5, atol=1e-5)


def _reference_block(blk, x, window, shift, mask):
    """The reference code's block on a (B, H, W, C) map: zero-pad, roll, partition, attend,
    reverse, roll back, crop, then the two post-norm residuals."""
    from swinv2_backbone.ops import pad_to_multiple, window_partition, window_reverse
    H, W = x.shape[1:3]
    y = pad_to_multiple(x, window)
    Hp, Wp = y.shape[1:3]
    y = torch.roll(y, (-shift, -shift), (1, 2))
    y = blk.attn(window_partition(y, window), window, mask if shift else None)
    y = torch.roll(window_reverse(y, window, Hp, Wp), (shift, shift), (1, 2))[:, :H, :W]
    x = x + blk.norm1(y)
    return x + blk.norm2(blk.mlp(x))


@pytest.mark.parametrize('grad', [False, True])
def test_stage_gathers_match_pad_roll_partition(grad):
    """A 9x9 map with window 4 pads to 12x12 and only then rolls, so zero padding ends up
    between the rolled rows (as the references pad). The stage's single gathers between
    window orders (plain, shifted, back to the map) must give exactly that, with and without
    autograd (in-place chunked inference vs the training path)."""
    from swinv2_backbone.ops import shift_attn_mask
    model = small()
    stage = model.stages[1]  # plain then shifted block, 2 heads
    stage.downsample = None
    x = torch.randn(2, 9, 9, 64, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        got = stage(x)
    with torch.no_grad():
        want = _reference_block(stage.blocks[0], x, 4, 0, None)
        want = _reference_block(stage.blocks[1], want, 4, 2, shift_attn_mask(12, 12, 4, 2))
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-5)


def test_inference_chunks_give_the_training_path_result(monkeypatch):
    """Inference runs a few windows at a time, in place; the result must not depend on it."""
    from swinv2_backbone import blocks
    model = small()
    x = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(blocks, 'INFERENCE_CHUNK_TOKENS', 16)  # one window per chunk
        chunked = model(x)
    with torch.enable_grad():
        trained = model(x.requires_grad_())
    for a, b, c in zip(whole, chunked, trained):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, c.detach(), rtol=1e-5, atol=1e-5)


def test_shape_caches_are_bounded():
    from swinv2_backbone import blocks
    model = small()
    with torch.no_grad():
        for w in range(40, 40 + 4 * (blocks.SHAPE_CACHE_SIZE + 3), 4):
            model(torch.randn(1, 3, 64, w))
    for stage in model.stages:
        assert len(stage._layouts) <= blocks.SHAPE_CACHE_SIZE
        assert len(stage._masks) <= blocks.SHAPE_CACHE_SIZE


def test_small_map_shrinks_window_and_drops_shift():
    from swinv2_backbone.ops import effective_window
    assert effective_window(5, 9, 8, 4) == (5, 0)
    assert effective_window(9, 9, 8, 4) == (8, 4)
    assert effective_window(8, 30, 8, 4) == (8, 0)


def test_position_tables_are_not_in_the_state_dict():
    keys = SwinV2Backbone(**SMALL).state_dict().keys()
    assert not [k for k in keys if 'relative' in k or 'mask' in k]


def test_set_window_size_equals_building_at_that_window_with_same_weights():
    src = small(window_size=4, pretrained_window_sizes=(4, 4, 4, 4))
    built = SwinV2Backbone(**{**SMALL, 'window_size': 8, 'pretrained_window_sizes': (4,) * 4})
    built.load_state_dict(src.state_dict())
    built.eval()
    src.set_window_size(8)
    assert src.window_sizes == (8, 8, 8, 8)
    assert src.stages[0].blocks[0].attn.relative_coords_table.shape == (15, 15, 2)
    x = torch.randn(1, 3, 130, 150)
    with torch.no_grad():
        for a, b in zip(src(x), built(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_window_change_changes_features_but_not_weights():
    model = small(pretrained_window_sizes=(4, 4, 4, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        a = model(x)
        model.set_window_size((8, 8, 6, 4))
        b = model(x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.allclose(a[0], b[0])


def test_cpb_coordinates_normalised_by_pretrained_window():
    from swinv2_backbone.ops import relative_coords_table
    t8 = relative_coords_table(8)
    t16 = relative_coords_table(16, pretrained_window=8)
    # offset 7 at window 8 normalises to 1 -> log2(9)/3; at window 16 pretrained at 8 the same
    assert t8[-1, -1, 0].item() == pytest.approx(1.0566, abs=1e-4)
    assert t16[15 + 7, 0, 0].item() == pytest.approx(t8[-1, 0, 0].item())
    assert t16.abs().max() > t8.abs().max()  # larger offsets extrapolate beyond the table
    assert torch.equal(relative_coords_table(1), torch.zeros(1, 1, 2))


@pytest.mark.parametrize('frozen', [-1, 0, 1, 3, 4])
def test_frozen_stages_fix_everything_up_to_that_stage_output(frozen):
    names = ('stem', 'stage1', 'stage2', 'stage3', 'stage4')
    model = SwinV2Backbone(**SMALL, frozen_stages=frozen, out_features=names)
    model.train()
    # 'patch_embed', 'stages.2', 'out_norms.stage1', ...
    part = lambda n: '.'.join(n.split('.')[:1 if n.startswith('patch_embed') else 2])  # noqa
    trainable = {part(n) for n, p in model.named_parameters() if p.requires_grad}
    frozen_parts = {'patch_embed', 'out_norms.stem'} if frozen >= 0 else set()
    frozen_parts |= {f'stages.{i}' for i in range(max(frozen, 0))}
    frozen_parts |= {f'out_norms.stage{i + 1}' for i in range(max(frozen, 0))}
    assert not trainable & frozen_parts
    assert trainable | frozen_parts == {'patch_embed', 'out_norms.stem',
                                        *(f'stages.{i}' for i in range(4)),
                                        *(f'out_norms.stage{i}' for i in range(1, 5))}
    for part in frozen_parts:
        assert not model.get_submodule(part).training
    if frozen < 4:
        assert model.stages[3].training


def test_frozen_parts_receive_no_gradient_and_others_do():
    model = SwinV2Backbone(**SMALL, frozen_stages=2)
    model.init_weights()
    model.train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert model.patch_embed.proj.weight.grad is None
    assert model.stages[1].blocks[0].attn.qkv.weight.grad is None
    assert model.stages[2].blocks[0].attn.qkv.weight.grad is not None


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = small()
    ckpt = small(with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 48, 40)
    grads = []
    for model in (plain, ckpt):
        model.train()
        sum(o.square().mean() for o in model(x)).backward()
        grads.append(model.stages[1].blocks[1].attn.cpb_mlp[0].weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_init_weights_follows_the_official_init():
    model = SwinV2Backbone(**SMALL)
    model.init_weights()
    blk = model.stages[1].blocks[0]
    assert torch.count_nonzero(blk.norm1.weight) == 0 and torch.count_nonzero(blk.norm2.bias) == 0
    assert model.out_norms['stage1'].weight.eq(1).all()
    assert blk.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_norm_eval_keeps_norms_in_eval_mode():
    model = SwinV2Backbone(**SMALL, norm_eval=True).train()
    assert not model.stages[0].blocks[0].norm1.training
    assert model.stages[0].blocks[0].attn.training


def test_giant_preset_adds_a_norm_every_sixth_block():
    from swinv2_backbone.backbone import ARCH_PRESETS
    cfg = dict(ARCH_PRESETS['giant'], embed_dim=16, num_heads=(1, 1, 1, 1))
    model = SwinV2Backbone(cfg)
    norms = [i for i, b in enumerate(model.stages[2].blocks) if b.norm3 is not None]
    assert norms == [5, 11, 17, 23, 29, 35, 41]
    assert model.stages[0].blocks[1].norm3 is None


# ------------------------------------------------------------------ registration
def test_builds_from_mmdet_and_mmseg_registries():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG):
        model = registry.build(dict(type='SwinV2Backbone', **SMALL, out_indices=(1, 2)))
        assert isinstance(model, SwinV2Backbone) and model.out_channels == (64, 128)


def test_custom_imports_config_builds_in_mmdet_scope(tmp_path):
    from mmengine.config import Config
    from mmdet.registry import MODELS
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['swinv2_backbone'],\n"
                   "                      allow_failed_imports=False)\n"
                   "model = dict(type='SwinV2Backbone', arch='tiny', window_size=16,\n"
                   "             pretrained_window_sizes=(8, 8, 8, 8))\n")
    model = MODELS.build(Config.fromfile(str(cfg)).model)
    assert model.window_sizes == (16, 16, 16, 16)


@pytest.mark.parametrize('hidden', [('mmdet',), ('mmseg',), ('mmdet', 'mmseg', 'mmpretrain'),
                                    ('mmcv',)])
def test_package_imports_without_host_libraries(hidden):
    """The core runs without the hosts, and without mmcv: then the installed hosts, which need
    mmcv, are skipped with a warning that says why."""
    code = ('import sys\n'
            f'for name in {hidden!r}: sys.modules[name] = None\n'
            'import swinv2_backbone, torch\n'
            'print(sorted(swinv2_backbone.REGISTERED_SCOPES))\n'
            'm = swinv2_backbone.SwinV2Backbone(arch="tiny")\n'
            'print(len(m(torch.randn(1, 3, 64, 64))))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    scopes, n = out.stdout.split('\n')[:2]
    assert n == '4'
    hosts = ('mmdet', 'mmseg', 'mmpretrain') if hidden == ('mmcv',) else hidden
    for name in hosts:
        assert name not in scopes
        if hidden == ('mmcv',):
            assert f'{name} is installed but does not import' in out.stderr
    assert 'mmengine' in scopes


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize('x,exc,match', [
    (torch.randn(3, 32, 32), ValueError, r'\(B, C, H, W\).*\(3, 32, 32\)'),
    (torch.randn(1, 4, 32, 32), ValueError, 'expected 3 input channels, got 4'),
    (torch.randint(0, 255, (1, 3, 32, 32)), TypeError, 'floating-point.*int64'),
    (torch.randn(1, 3, 3, 32), ValueError, r'\(3, 32\) is smaller than one 4x4 patch'),
    ([[1.0]], TypeError, 'torch.Tensor, got list'),
])
def test_bad_input_names_the_problem(x, exc, match):
    with pytest.raises(exc, match=match):
        small()(x)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(arch='huge'), ValueError, "unknown arch 'huge'"),
    (dict(arch=3), TypeError, 'arch must be a str or dict, got int'),
    (dict(arch=dict(embed_dim=32, depths=(1, 1), num_heads=(1,))), ValueError,
     r'depths \(1, 1\) and num_heads \(1,\)'),
    (dict(window_size=0), ValueError, 'window sizes must be positive, got 0'),
    (dict(window_size=(7, 7, 7)), ValueError, r'window_size must be an int or 4 ints'),
    (dict(pretrained_window_sizes=(8, -1, 8, 8)), ValueError, 'pretrained_window_sizes'),
    (dict(out_indices=(0, 4)), ValueError, r'out_indices .* \(0, 4\)'),
    (dict(out_features=('stage5',)), ValueError, "'stage5'"),
    (dict(out_indices=(0, 1), out_features=('stage1', 'stage3')), ValueError,
     'name different maps'),
    (dict(out_indices=(1, 1)), ValueError, 'listed twice'),
    (dict(frozen_stages=5), ValueError, r'frozen_stages must be in \[-1, 4\], got 5'),
    (dict(embed_dim=0), ValueError, 'embed_dim must be a positive int, got 0'),
    (dict(num_heads=(1, 2, 4, 7)), ValueError, 'dim 256 is not divisible by num_heads 7'),
])
def test_bad_arguments_name_the_problem(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SwinV2Backbone(**{**SMALL, **kwargs})


def test_set_window_size_rejects_bad_windows():
    with pytest.raises(ValueError, match='must be positive'):
        small().set_window_size(-2)


def test_bf16_autocast_gives_finite_features_close_to_fp32():
    model = small()
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for a, b in zip(low, ref):
        assert torch.isfinite(a).all()
        err = (a.float() - b).abs() / b.std()
        assert err.max().item() < 0.1 and err.pow(2).mean().sqrt().item() < 2e-2


def test_runs_off_cpu_on_the_meta_device():
    """No GPU here: the meta device takes the paths other devices take (F.linear, SDPA,
    CosineAttention off CPU) and fails on any tensor left on the CPU."""
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


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_gives_gradients_close_to_fp32(dtype):
    """A training step under autocast (the autograd functions in bf16 or fp16, as with AMP on
    GPUs), with zero-padded windows: finite, and every parameter's gradient points the same
    way as in float32. fp16 overflowed 1 / NORM_EPS for the padding's k and gave NaN."""
    torch.manual_seed(0)
    model = small(drop_path_rate=0.0).train()
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


def test_bf16_inference_keeps_the_position_bias_and_attention_in_float32():
    """Under bf16 autocast without autograd only the GEMMs round to bf16. With bf16-exact
    weights and input and the largest temperature (100), one attention is then less than half
    as far from float32 as autocast's bf16 attention (the autograd path) is."""
    from swinv2_backbone.attention import WindowAttentionV2
    torch.manual_seed(0)
    attn = WindowAttentionV2(64, 4, 8).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.5).copy_(p.bfloat16())
        attn.logit_scale.fill_(math.log(100))
    x = torch.randn(6, 64, 64).bfloat16().float()
    with torch.no_grad():
        ref = attn(x, 8)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert attn.position_bias(8).dtype == torch.float32
            ours = attn(x, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        bf16 = attn(x.requires_grad_(), 8).detach()

    def rms(out):
        return ((out.float() - ref) / ref.std()).pow(2).mean().sqrt().item()
    assert 0 < rms(ours) < 0.5 * rms(bf16)


@pytest.mark.parametrize('sdpa', [False, True])
@pytest.mark.parametrize('images', [1, 3])
def test_attend_matches_pytorch_sdpa_with_masks_and_chunks(images, sdpa, monkeypatch):
    """attend against F.scaled_dot_product_attention, with the shift mask of several images:
    its CPU path (bmm, softmax, bmm a few windows at a time, chunk edges inside images) and
    the path GPUs take (SDPA with the bias and mask rows combined)."""
    from swinv2_backbone import attention
    monkeypatch.setattr(attention, 'CHUNK_LOGITS', 3 * 2 * 16 * 16)  # 3 windows per chunk
    torch.manual_seed(0)
    nW, h, N, d = 4, 2, 16, 8
    q, k, v = (torch.randn(images * nW, h, N, d) for _ in range(3))
    bias, mask = torch.randn(h, N, N), torch.randn(nW, N, N)
    for m in (None, mask):
        full = bias if m is None else bias + m.repeat(images, 1, 1).unsqueeze(1)
        want = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=full.expand(images * nW, h, N, N), scale=1.0)
        got = attention.attend(q.clone(), k, v, bias, m, sdpa=sdpa)
        torch.testing.assert_close(got, want.transpose(1, 2).reshape(images * nW, N, h * d),
                                   rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ fast path
@pytest.mark.parametrize('chunked,sdpa', [(False, False), (True, False), (True, True)])
def test_fused_and_explicit_attention_agree_in_forward_and_gradients(chunked, sdpa,
                                                                     monkeypatch):
    """The fused path (CosineAttention and GeluMlp autograd functions, their own backward)
    against plain autograd through the reference's explicit ops: outputs, every parameter's
    gradient and the input's gradient, with the functions' chunks whole or a few rows, and
    with attention through SDPA as on GPUs."""
    from functools import partial

    from swinv2_backbone import attention, blocks
    if sdpa:
        monkeypatch.setattr(attention, 'attend', partial(attention.attend, sdpa=True))
    if chunked:  # chunk edges fall inside images and windows do not divide evenly
        monkeypatch.setattr(attention, 'TRAIN_CHUNK_TOKENS', 48)
        monkeypatch.setattr(attention, 'CHUNK_LOGITS', 100)
        monkeypatch.setattr(blocks, 'MLP_CHUNK_ROWS', 40)
    fused = small(fused_attn=True)
    explicit = small(fused_attn=False)
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 75, 61)  # padded and shifted windows, a shrunken last stage
    grads = []
    for model in (fused, explicit):
        model.train()
        xg = x.clone().requires_grad_()
        outs = model(xg)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        grads[-1]['input'] = xg.grad
        with torch.no_grad():
            grads[-1]['outputs'] = torch.cat([o.flatten() for o in model.eval()(x)])
    for name, g in grads[1].items():
        err = ((grads[0][name] - g).abs().max() / g.abs().max().clamp_min(1e-12)).item()
        assert err < 1e-5, (name, err)


def test_cosine_attention_backward_passes_gradcheck(monkeypatch):
    """Finite differences in float64 against CosineAttention's hand-written backward, for x,
    the qkv weight and bias, the temperature and the position bias, with a shift mask and
    chunks of 3 windows over 2 images of 4 windows."""
    from swinv2_backbone import attention
    monkeypatch.setattr(attention, 'TRAIN_CHUNK_TOKENS', 12)
    torch.manual_seed(0)
    kw = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 4, 6, **kw)  # 2 images x 4 windows of 2x2, 6 channels, 2 heads
    weight = torch.randn(18, 6, **kw)
    qkv_bias = torch.randn(18, **kw)
    scale = torch.rand(2, **kw) * 5 + 1
    bias = torch.randn(2, 4, 4, **kw)
    mask = (torch.rand(4, 4, 4) > 0.7).double() * -100
    assert torch.autograd.gradcheck(
        lambda *a: attention.CosineAttention.apply(*a, mask, 2),
        (x, weight, qkv_bias, scale, bias))


def test_gelu_mlp_backward_passes_gradcheck(monkeypatch):
    from swinv2_backbone import blocks
    monkeypatch.setattr(blocks, 'MLP_CHUNK_ROWS', 3)
    torch.manual_seed(0)
    kw = dict(dtype=torch.float64, requires_grad=True)
    args = (torch.randn(7, 4, **kw), torch.randn(16, 4, **kw), torch.randn(16, **kw),
            torch.randn(4, 16, **kw), torch.randn(4, **kw))
    assert torch.autograd.gradcheck(blocks.GeluMlp.apply, args)


def test_eval_position_bias_cache_follows_new_weights():
    model = small(fused_attn=True)
    attn = model.stages[0].blocks[0].attn
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        first = model(x)[0]
        cached = attn._bias_cache[1]
        assert attn.position_bias(4) is cached  # reused while the weights are unchanged
        attn.cpb_mlp[2].weight.mul_(2)  # in place, as load_state_dict does
        second = model(x)[0]
    assert attn._bias_cache[1] is not cached
    assert not torch.allclose(first, second)
    with torch.no_grad():
        third = small(fused_attn=True)
        third.load_state_dict(model.state_dict())
        assert torch.equal(third(x)[0], second)


@pytest.mark.parametrize('train', [False, True])
def test_compiles_as_one_graph_without_breaks(train):
    import torch._dynamo as dynamo
    model = small(drop_path_rate=0.1).train(train)
    with torch.set_grad_enabled(train):
        explained = dynamo.explain(model)(torch.randn(1, 3, 70, 90))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, \
        [b.reason for b in explained.break_reasons]


def test_compiles_as_one_graph_under_bf16_autocast_inference():
    """bf16 autocast inference, as used with compile, traces without graph breaks too."""
    import torch._dynamo as dynamo
    model = small().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        explained = dynamo.explain(model)(torch.randn(1, 3, 70, 90))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, \
        [b.reason for b in explained.break_reasons]


def test_compiled_model_matches_eager_at_several_sizes():
    # dynamic=False: a new size recompiles (symbolic sizes send dynamo into minutes of sympy)
    model = small()
    compiled = torch.compile(model, backend='eager', fullgraph=True, dynamic=False)
    with torch.no_grad():
        for size in ((64, 64), (70, 90)):
            x = torch.randn(1, 3, *size)
            for a, b in zip(compiled(x), model(x)):
                torch.testing.assert_close(a, b)


def test_bf16_stays_finite_at_the_papers_largest_resolution():
    model = SwinV2Backbone(arch=dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
                           window_size=16, pretrained_window_sizes=(8, 8, 8, 8))
    randomize_(model).eval()
    x = torch.randn(1, 3, 1536, 1536)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert [o.shape[-1] for o in outs] == [384, 192, 96, 48]
    assert all(torch.isfinite(o).all() for o in outs)
