"""Loading every layout users have, at any window, with a loud report; converter; bad files.

Each reference model is randomised in full and saved the way its library saves it; our backbone
loads the file through ``init_cfg`` and must give the reference's features.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swinv2_backbone import SwinV2Backbone, detect_format, load_pretrained, read_checkpoint
from swinv2_backbone.weights.checkpoints import from_timm

from devkit.testing import randomize_, rel_err

TOL = 1e-4
TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
ROOT = Path(__file__).resolve().parent.parent


def timm_tiny(window=8, pretrained=(0, 0, 0, 0), img=256, seed=0):
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    model = SwinTransformerV2(img_size=img, window_size=window, pretrained_window_sizes=pretrained,
                              num_classes=10, drop_path_rate=0.0, **TINY)
    return randomize_(model, seed).eval()


def timm_feats(model, x):
    with torch.no_grad():
        return model.forward_intermediates(x, intermediates_only=True)


def to_official(timm_model) -> dict:
    """timm's layout back to Microsoft's release: patch merging at the end of the previous stage,
    ``head.fc`` -> ``head``, plus the window-dependent buffers the release saves."""
    sd = {}
    for k, v in timm_model.state_dict().items():
        if m := re.match(r'layers\.(\d+)\.downsample\.(.*)', k):
            k = f'layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}'
        sd[k.replace('head.fc.', 'head.')] = v
    for name, buf in timm_model.named_buffers():
        if re.search(r'relative_coords_table|relative_position_index|attn_mask', name):
            sd[name] = buf.clone()
    return sd


def ours(path_or_sd, window=8, pretrained=(0, 0, 0, 0), **kw):
    kw.setdefault('out_norm', False)
    model = SwinV2Backbone('tiny', window_size=window, pretrained_window_sizes=pretrained,
                           drop_path_rate=0.0, **kw,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path_or_sd)))
    model.init_weights()
    return model.eval()


def assert_matches(model, ref_feats, x):
    with torch.no_grad():
        feats = model(x)
    errs = [rel_err(a, b) for a, b in zip(feats, ref_feats)]
    print('max |diff| / std per stage:', ['%.2e' % e for e in errs])
    assert len(feats) == len(ref_feats) and max(errs) < TOL, errs


@pytest.fixture(scope='module')
def ref():
    return timm_tiny()


@pytest.fixture(scope='module')
def x():
    return torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ formats
def test_official_layout_is_what_timm_reads_as_official(ref):
    """Our stand-in for a Microsoft .pth is accepted by timm's own official-checkpoint filter."""
    from timm.models.swin_transformer_v2 import checkpoint_filter_fn
    filtered = checkpoint_filter_fn({'model': to_official(ref)}, ref)
    own = ref.state_dict()
    assert filtered.keys() == own.keys()
    assert all(torch.equal(filtered[k], own[k]) for k in own)


def test_loads_official_release_and_its_final_norm(tmp_path, ref, x):
    path = tmp_path / 'swinv2_tiny_patch4_window8_256.pth'
    torch.save({'model': to_official(ref)}, path)
    assert detect_format(read_checkpoint(path)) == 'official'
    assert_matches(ours(path), timm_feats(ref, x), x)
    last = ours(path, out_indices=(3,), out_norm=True)
    with torch.no_grad():
        ref_last = ref.forward_features(x).permute(0, 3, 1, 2)
    assert_matches(last, [ref_last], x)


def test_loads_simmim_pretrained_official_checkpoint(tmp_path, ref, x):
    sd = {f'encoder.{k}': v for k, v in to_official(ref).items() if not k.startswith('head.')}
    sd['encoder.mask_token'] = torch.zeros(1, 1, 96)
    sd['decoder.0.weight'] = torch.randn(3 * 32 * 32, 768, 1, 1)
    sd['decoder.0.bias'] = torch.randn(3 * 32 * 32)
    path = tmp_path / 'simmim.pth'
    torch.save({'model': sd}, path)
    assert_matches(ours(path), timm_feats(ref, x), x)


def test_loads_timm_current_and_older_layouts(tmp_path, ref, x):
    new, old = tmp_path / 'timm.pth', tmp_path / 'timm_old.pth'
    torch.save(ref.state_dict(), new)
    torch.save(to_official(ref), old)  # timm < 0.9 saved the official layout, unwrapped
    assert detect_format(read_checkpoint(new)) == 'timm'
    for path in (new, old):
        assert_matches(ours(path), timm_feats(ref, x), x)


@pytest.mark.parametrize('cls,safe', [('Swinv2ForImageClassification', True),
                                      ('Swinv2ForImageClassification', False),
                                      ('Swinv2Model', True),
                                      ('Swinv2ForMaskedImageModeling', True),
                                      ('Swinv2Backbone', False)])
def test_loads_hf_model_directories_and_files(tmp_path, x, cls, safe):
    import transformers
    config = transformers.Swinv2Config(image_size=256, window_size=8, drop_path_rate=0.0,
                                       embed_dim=96, depths=[2, 2, 6, 2],
                                       num_heads=[3, 6, 12, 24], num_labels=10,
                                       out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    model = randomize_(getattr(transformers, cls)(config)).eval()
    model.save_pretrained(tmp_path, safe_serialization=safe)
    weights = tmp_path / ('model.safetensors' if safe else 'pytorch_model.bin')
    assert weights.exists()
    backbone = transformers.Swinv2Backbone(config).eval()
    body = getattr(model, 'swinv2', model)
    backbone.load_state_dict(body.state_dict(), strict=False)
    with torch.no_grad():
        ref_feats = backbone(x).feature_maps
    for path in (tmp_path, weights):  # the directory, as from_pretrained takes it, or the file
        assert_matches(ours(path), ref_feats, x)


def test_loads_mmpretrain_classifier_checkpoint(tmp_path, x):
    from mmengine.registry import DefaultScope
    from mmpretrain.models import build_classifier
    # mmpretrain's scope whatever an earlier test left as the default (mmdet's has no
    # ImageClassifier)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        clf = build_classifier(dict(
            type='ImageClassifier',
            backbone=dict(type='SwinTransformerV2', arch='tiny', img_size=256, window_size=8,
                          drop_path_rate=0.0),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=768)))
    randomize_(clf).eval()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': clf.state_dict(), 'meta': dict(epoch=30)}, path)
    assert detect_format(read_checkpoint(path)) == 'mmpretrain'
    model = ours(path, out_indices=(3,), out_norm=True)
    with torch.no_grad():
        ref_feats = clf.backbone(x)  # out_indices=(3,) with its norm3
    assert_matches(model, ref_feats, x)


def test_loads_our_own_checkpoint_and_a_whole_mmdet_model(tmp_path, x):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / 'tests' / 'data' / 'mask_rcnn_swinv2_tiny.py'))
    detector = MODELS.build(cfg.model)
    randomize_(detector)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': detector.state_dict(), 'meta': {'dataset_meta': {}}}, path)
    assert detect_format(read_checkpoint(path)) == 'ours'
    src = detector.backbone.eval()
    with torch.no_grad():
        want = src(x)
    model = ours(path, out_norm=True)
    assert_matches(model, want, x)

    from swinv2_backbone import save_checkpoint
    mine = tmp_path / 'ours.safetensors'
    save_checkpoint(model.state_dict(), mine)
    assert_matches(ours(mine, out_norm=True), want, x)


# ------------------------------------------------------------------ other windows
@pytest.mark.parametrize('window,size', [(16, 512), (24, 384)])
def test_window8_checkpoint_runs_at_larger_windows(tmp_path, ref, window, size):
    path = tmp_path / 'w8.pth'
    torch.save({'model': to_official(ref)}, path)
    big = timm_tiny(window=window, pretrained=(8, 8, 8, 8), img=size)
    big.load_state_dict(ref.state_dict())  # same weights, buffers built for the new window
    x = torch.randn(1, 3, size, size)
    model = ours(path, window=window, pretrained=(8, 8, 8, 8))
    assert model.stages[0].blocks[0].attn.relative_coords_table.shape[0] == 2 * window - 1
    assert_matches(model, timm_feats(big, x), x)


def test_absolute_pos_embed_is_resized_to_the_model_grid(tmp_path):
    src = randomize_(SwinV2Backbone('tiny', use_abs_pos_embed=True, pretrain_img_size=192))
    model = SwinV2Backbone('tiny', use_abs_pos_embed=True, pretrain_img_size=256)
    report = load_pretrained(model, src.state_dict())
    assert model.absolute_pos_embed.shape == (1, 96, 64, 64)
    assert report.resized == ['absolute_pos_embed (1, 96, 48, 48) -> (1, 96, 64, 64)']


# ------------------------------------------------------------------ reporting
def test_report_lists_dropped_missing_and_unexpected_keys(tmp_path, ref):
    path = tmp_path / 'official.pth'
    torch.save({'model': to_official(ref)}, path)
    model = SwinV2Backbone('tiny', out_indices=(0, 1, 2))
    messages = []

    class Log:
        info = warning = staticmethod(messages.append)
    report = load_pretrained(model, path, logger=Log)
    assert report.format == 'official'
    assert 'head.weight' in report.dropped
    assert 'layers.0.blocks.1.attn_mask' in report.dropped
    assert 'layers.2.blocks.0.attn.relative_coords_table' in report.dropped
    assert report.missing == [f'out_norms.stage{i}.{p}' for i in (1, 2, 3)
                              for p in ('bias', 'weight')]
    assert report.unexpected == ['out_norms.stage4.bias', 'out_norms.stage4.weight']
    assert any('missing keys' in m and 'out_norms.stage1.weight' in m for m in messages)
    assert any('unexpected keys' in m and 'out_norms.stage4.bias' in m for m in messages)


# ------------------------------------------------------------------ bad files
def _swin_v1_state_dict():
    from timm.models.swin_transformer import SwinTransformer
    return SwinTransformer(img_size=224, embed_dim=32, depths=(1, 1, 1, 1),
                           num_heads=(1, 1, 1, 1)).state_dict()


def _resnet_state_dict():
    import torchvision
    return torchvision.models.resnet18().state_dict()


@pytest.mark.parametrize('make,exc,match', [
    (None, FileNotFoundError, 'checkpoint not found'),
    (lambda p: p.write_text('not a checkpoint\n'), ValueError, 'not a readable PyTorch checkpoint'),
    ('truncated', ValueError, 'truncated or corrupt'),
    (lambda p: torch.save({'model': _swin_v1_state_dict()}, p), ValueError,
     'Swin v1 checkpoint'),
    (lambda p: torch.save(_resnet_state_dict(), p), ValueError, 'not a SwinV2 checkpoint'),
    (lambda p: torch.save({'epoch': 3}, p), ValueError, 'holds no tensors'),
    ('onnx', ValueError, r'bad.onnx is an exported model .ONNX, OpenVINO or TensorRT., not a '
     'checkpoint'),
])
def test_bad_checkpoints_fail_with_a_clear_error(tmp_path, ref, make, exc, match):
    path = tmp_path / 'bad.pth'
    if make == 'onnx':  # a real ONNX graph, as tools/export.py writes one
        import onnx
        path = tmp_path / 'bad.onnx'
        graph = onnx.helper.make_graph([onnx.helper.make_node('Relu', ['x'], ['y'])], 'g',
                                       [onnx.helper.make_tensor_value_info('x', 1, [1])],
                                       [onnx.helper.make_tensor_value_info('y', 1, [1])])
        onnx.save(onnx.helper.make_model(graph), str(path))
    if make == 'truncated':
        torch.save({'model': to_official(ref)}, path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif make is not None and make != 'onnx':
        make(path)
    with pytest.raises(exc, match=match):
        ours(path)


def test_tiny_weights_into_base_name_the_key_and_both_shapes(tmp_path, ref):
    path = tmp_path / 'tiny.pth'
    torch.save(ref.state_dict(), path)
    model = SwinV2Backbone('base', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'patch_embed.proj.weight: checkpoint '
                                         r'\(96, 3, 4, 4\) vs model \(128, 3, 4, 4\)'):
        model.init_weights()


def test_tiny_weights_into_small_report_the_missing_blocks(tmp_path, ref):
    sd, _ = from_timm(ref.state_dict())
    with pytest.raises(ValueError, match=r'204 backbone weights missing, in stages\.2\.blocks\.6, '
                                         r'stages\.2\.blocks\.7, .*stages\.2\.blocks\.17$'):
        load_pretrained(SwinV2Backbone('small'), sd)


# ------------------------------------------------------------------ converter tool
def convert(*args):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'convert_checkpoint.py'), *args],
                          capture_output=True, text=True)


def test_converter_writes_our_layout_and_reports(tmp_path, ref, x):
    src = tmp_path / 'official.pth'
    torch.save({'model': to_official(ref)}, src)
    for dst in (tmp_path / 'out.pth', tmp_path / 'out.safetensors'):
        run = convert(str(src), str(dst))
        assert run.returncode == 0, run.stderr
        assert 'official layout' in run.stdout and 'head.weight' in run.stdout
        assert detect_format(read_checkpoint(dst)) == 'ours'
        assert_matches(ours(dst), timm_feats(ref, x), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['official.pth', 'out.pth',
                                                          'out.safetensors']


def test_converter_refuses_to_overwrite_without_force(tmp_path, ref):
    src, dst = tmp_path / 'timm.pth', tmp_path / 'out.pth'
    torch.save(ref.state_dict(), src)
    dst.write_text('precious')
    run = convert(str(src), str(dst))
    assert run.returncode == 1 and '--force' in run.stderr
    assert dst.read_text() == 'precious'
    assert convert(str(src), str(dst), '--force').returncode == 0
    assert detect_format(read_checkpoint(dst)) == 'ours'


def test_converter_leaves_nothing_behind_on_a_bad_source(tmp_path, ref):
    src, dst = tmp_path / 'trunc.pth', tmp_path / 'out.pth'
    torch.save(ref.state_dict(), src)
    src.write_bytes(src.read_bytes()[:1000])
    run = convert(str(src), str(dst), '--from', 'timm')
    assert run.returncode == 1 and 'truncated or corrupt' in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['trunc.pth']


def test_converter_leaves_no_partial_file_when_the_write_fails(tmp_path, ref, monkeypatch):
    from swinv2_backbone.weights import loading
    dst = tmp_path / 'out.pth'

    def fail(obj, path):
        Path(path).write_bytes(b'half')
        raise OSError('disk full')
    monkeypatch.setattr(loading.torch, 'save', fail)
    with pytest.raises(OSError, match='disk full'):
        loading.save_checkpoint({'w': torch.zeros(1)}, dst)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o077, 0o600)])
def test_saved_files_get_the_mode_the_umask_gives_not_the_temporary_files(
        tmp_path, umask, mode):
    import os
    from swinv2_backbone import save_checkpoint
    old = os.umask(umask)
    try:
        for name in ('w.pth', 'w.safetensors'):
            save_checkpoint({'a': torch.zeros(2)}, tmp_path / name)
            assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    finally:
        os.umask(old)


def test_converter_refuses_a_layout_the_keys_are_not_in_and_accounts_for_hf_merges(tmp_path):
    """--from timm on an HF directory used to map nothing and write the HF keys unchanged,
    saying 'timm layout'; an HF conversion says where its missing tensors went."""
    import transformers
    config = transformers.Swinv2Config(image_size=64, window_size=4, embed_dim=16,
                                       depths=[1, 1], num_heads=[1, 2])
    hf_dir = tmp_path / 'hf'
    transformers.Swinv2Model(config).save_pretrained(hf_dir)
    run = convert(str(hf_dir), str(tmp_path / 'out.pth'), '--from', 'timm')
    assert run.returncode == 1
    assert "the keys are in the hf layout, not timm's" in run.stderr
    assert "convert with 'hf' or 'auto'" in run.stderr
    assert not (tmp_path / 'out.pth').exists()
    run = convert(str(hf_dir), str(tmp_path / 'out.pth'))
    assert run.returncode == 0, run.stderr
    source = len(read_checkpoint(hf_dir))
    converted = len(read_checkpoint(tmp_path / 'out.pth'))
    assert (f'mapped {source} tensors to {converted} of the swinv2_backbone layout (query, key '
            'and value projections merged into qkv)') in run.stdout


class _Shell:
    """Pickles as a call of os.system: what a malicious checkpoint holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f'touch {self.marker}',))


def test_a_file_that_would_run_code_is_refused_naming_what_it_holds(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'extra': _Shell(marker)}, path)
    with pytest.raises(ValueError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert 'holds Python objects besides tensors, which the safe loader refuses to create: ' \
        'posix.system' in message
    assert 'trust_file=True' in message and 'truncated or corrupt' not in message
    assert not marker.exists()


@pytest.mark.parametrize('feature_cls', ['list', 'getter'])
def test_loads_timm_features_only_state_dicts(tmp_path, x, feature_cls):
    """timm's feature wrappers: FeatureListNet names stages ``layers_N.``, FeatureGetterNet
    keeps the model under ``model.``; both used to fail ("not a SwinV2 checkpoint")."""
    import timm
    ref = timm.create_model('swinv2_tiny_window8_256', pretrained=False, features_only=True,
                            feature_cls=feature_cls, drop_path_rate=0.0)
    ref = randomize_(ref).eval()
    keys = list(ref.state_dict())
    assert any(k.startswith('layers_0.' if feature_cls == 'list' else 'model.layers.0.')
               for k in keys), keys[:5]
    torch.save(ref.state_dict(), tmp_path / 'features.pth')
    with torch.no_grad():
        ref_feats = [f if f.shape[1] in (96, 192, 384, 768) else f.permute(0, 3, 1, 2)
                     for f in ref(x)]
    assert_matches(ours(tmp_path / 'features.pth'), ref_feats, x)


def test_loads_any_prefix_a_wrapper_adds(tmp_path, ref, x):
    sd = {f'model.{k}': v for k, v in ref.state_dict().items()}
    sd['criterion.weight'] = torch.ones(3)
    torch.save({'state_dict': sd}, tmp_path / 'wrapped.pth')
    report = load_pretrained(SwinV2Backbone('tiny', window_size=8, out_norm=False),
                             tmp_path / 'wrapped.pth')
    assert report.format == 'timm' and 'criterion.weight' in report.dropped
    assert_matches(ours(tmp_path / 'wrapped.pth'), timm_feats(ref, x), x)


def test_an_unknown_layout_says_what_it_looked_for_and_never_denies_present_keys():
    with pytest.raises(ValueError) as info:
        detect_format(['net.block0.attn.cpb_mlp.0.weight', 'net.block0.qkv.weight'])
    message = str(info.value)
    assert 'looked for stages.N.blocks.N.attn.cpb_mlp (this package), ' in message
    assert 'layers.N.blocks.N.attn.cpb_mlp (the official release, timm)' in message
    assert "its continuous-position-bias MLP keys are in no layout read here: " \
        "['net.block0.attn.cpb_mlp.0.weight']" in message
    assert 'none of its' not in message
