"""SwinV2Backbone as a model: its output contract at any size, its arguments and their errors,
freezing, init, registration, and running without the hosts."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.runtime.execution import Execution

from devkit.testing import randomize_

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
    from swinv2_backbone.model.backbone import ARCH_PRESETS
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
    (torch.randn(1, 3, 32, 32, dtype=torch.float64), TypeError,
     r'input dtype torch.float64 differs from the model\'s torch.float32 weights'),
    (torch.randn(1, 3, 32, 32).half(), TypeError, 'input dtype torch.float16 differs'),
])
def test_bad_input_names_the_problem(x, exc, match):
    with pytest.raises(exc, match=match):
        small()(x)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(arch='huge'), ValueError, "unknown arch 'huge'"),
    (dict(arch=3), TypeError, 'arch must be a str or dict, got int'),
    (dict(arch=dict(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))), ValueError,
     r"unknown arch keys \['embed_dims'\]; accepted: \['embed_dim', 'depths', 'num_heads', "
     r"'extra_norm_every_n_blocks'\] \(OpenMMLab's 'embed_dims' is 'embed_dim' here\)"),
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
    (dict(execution='fast'), ValueError, r"execution must be one of \('auto', 'reference', "),
    (dict(execution=Execution('cpu')), TypeError,
     r"execution takes a path name or a Request; .* use Request\('cpu', \.\.\.\)"),
    (dict(cuda_graph='yes'), TypeError, "cuda_graph must be a bool, got 'yes'"),
    (dict(with_cp='mlps'), ValueError,
     r"with_cp must be a bool or one of \('block', 'mlp'\), got 'mlps'"),
])
def test_bad_arguments_name_the_problem(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SwinV2Backbone(**{**SMALL, **kwargs})
