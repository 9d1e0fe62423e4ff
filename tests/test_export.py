"""ONNX export: one file, any batch and size, run by onnxruntime and OpenVINO like PyTorch.

Each exporter this torch has exports the model once (the dynamo one takes minutes here, the
TorchScript one seconds); every size then runs from that one file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from devkit.testing import randomize_

from swinv2_backbone import SwinV2Backbone, export_onnx
from swinv2_backbone.apps.export import (BackboneNeck, check_onnx, export_backbone_neck,
                                         read_metadata)
from swinv2_backbone.compat import CPU_HALF, TORCH_VERSION
from swinv2_backbone.files import _umask

onnxruntime = pytest.importorskip('onnxruntime')
ov = pytest.importorskip('openvino')

ROOT = Path(__file__).resolve().parent.parent
ARCH = dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8))
EXPORTERS = ['torchscript'] + (['dynamo'] if TORCH_VERSION >= (2, 6) else [])
# (batch, H, W): the example's size, odd sizes, 8x8 (stage 1's 2x2 map is smaller than the
# window, which shrinks and stops shifting; so are the later stages'), maps that pad then
# shift, a batch of 3, and the detection size
SIZES = [(2, 64, 96), (1, 33, 47), (3, 17, 130), (1, 8, 8), (1, 200, 64), (1, 800, 1344)]
TOL = 1e-4  # of each stage's std, float32


def small(**kw) -> SwinV2Backbone:
    model = SwinV2Backbone(arch=ARCH, window_size=4, drop_path_rate=0.0, **kw)
    return randomize_(model).eval()


@pytest.fixture(scope='module')
def model() -> SwinV2Backbone:
    return small()


@pytest.fixture(scope='module', params=EXPORTERS)
def exported(request, model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(request.param) / 'swinv2.onnx'
    return export_onnx(model, path, exporter=request.param)


def worst(rows: list[dict]) -> float:
    return max(e for row in rows for e in row['rel_err'].values())


def test_one_file_runs_in_onnxruntime_at_every_size_like_pytorch(model, exported):
    rows = check_onnx(model, exported, SIZES)
    assert [r['size'] for r in rows] == SIZES
    assert worst(rows) < TOL, rows


def test_outputs_are_named_after_the_stages_and_the_metadata_states_the_contract(model,
                                                                                 exported):
    session = onnxruntime.InferenceSession(str(exported), providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == list(model.out_features)
    assert [i.name for i in session.get_inputs()] == ['image']
    meta = read_metadata(exported)
    assert meta['out_features'] == list(model.out_features)
    assert meta['out_channels'] == list(model.out_channels)
    assert meta['out_strides'] == list(model.out_strides)
    assert meta['depths'] == list(ARCH['depths']) and meta['window_sizes'] == [4] * 4
    assert meta['dynamic'] is True and meta['dtype'] == 'float32'
    assert exported.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not a temporary file's 0600
    x = np.random.default_rng(0).standard_normal((1, 3, 37, 53), dtype=np.float32)
    shapes = [o.shape for o in session.run(None, {'image': x})]
    assert shapes == [(1, c, -(-37 // s), -(-53 // s))
                      for c, s in zip(model.out_channels, model.out_strides)]


def openvino_outputs(path: Path, hint: str, x: np.ndarray) -> tuple[list[np.ndarray], str]:
    compiled = ov.Core().compile_model(str(path), 'CPU', {'INFERENCE_PRECISION_HINT': hint})
    result = compiled(x)
    return [result[i] for i in range(len(compiled.outputs))], \
        str(compiled.get_property('INFERENCE_PRECISION_HINT'))


@pytest.mark.parametrize('size', [(2, 64, 96), (1, 33, 47), (1, 8, 8)])
def test_openvino_runs_the_file_like_pytorch_in_f32_and_close_in_bf16(model, exported, size):
    B, H, W = size
    x = torch.randn(B, 3, H, W)
    with torch.no_grad():
        want = [w.numpy() for w in model(x)]
    f32, _ = openvino_outputs(exported, 'f32', x.numpy())
    for got, ref in zip(f32, want):
        assert np.abs(got - ref).max() / ref.std() < TOL
    # where the CPU has no bf16 arithmetic OpenVINO runs f32 and the bound holds trivially
    bf16, precision = openvino_outputs(exported, 'bf16', x.numpy())
    for got, ref in zip(bf16, want):
        err = np.abs(got.astype(np.float32) - ref) / ref.std()
        assert np.isfinite(got).all()
        # the repo's bf16 bound (tests/test_paths.py)
        assert err.max() < 0.15 and np.sqrt((err ** 2).mean()) < 2e-2, (precision, err.max())


@pytest.mark.skipif(not CPU_HALF, reason='this torch has no float16 convolution on the CPU '
                    'to trace a half model with (the refusal is tested below)')
def test_a_half_export_runs_in_both_runtimes_within_fp16_rounding(model, tmp_path):
    path = export_onnx(model, tmp_path / 'half.onnx', half=True, exporter='torchscript')
    assert read_metadata(path)['dtype'] == 'float16'
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
    rows = check_onnx(model, path, [(1, 33, 47), (2, 64, 96)])
    assert worst(rows) < 0.03, rows
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        want = [w.numpy() for w in model(x)]
    got, _ = openvino_outputs(path, 'f32', x.numpy().astype(np.float16))
    for g, w in zip(got, want):
        assert g.dtype == np.float16 and np.abs(g.astype(np.float32) - w).max() / w.std() < 0.03


@pytest.mark.parametrize('kw', [dict(with_cp='mlp'), dict(with_cp=True, frozen_stages=2),
                                dict(execution='batched'), dict(execution='cpu')],
                         ids=['with_cp=mlp', 'with_cp+frozen', 'batched', 'cpu'])
def test_with_cp_frozen_stages_and_any_execution_export_the_same_model(model, kw, tmp_path):
    variant = SwinV2Backbone(arch=ARCH, window_size=4, drop_path_rate=0.0, **kw)
    variant.load_state_dict(model.state_dict())
    variant.train()  # exported in eval mode, and left in the mode it was in
    path = export_onnx(variant, tmp_path / 'variant.onnx', exporter='torchscript')
    assert variant.training
    assert worst(check_onnx(model, path, [(1, 33, 47), (2, 64, 96)])) < TOL


def test_a_failed_export_leaves_no_file_behind(model, tmp_path):
    target = tmp_path / 'out.onnx'
    target.write_bytes(b'the user\'s earlier file')
    with pytest.raises(Exception):
        export_onnx(model, target, exporter='torchscript', opset=1)  # no such opset
    assert target.read_bytes() == b'the user\'s earlier file'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.onnx']


def test_bad_arguments_are_refused_by_name(model, tmp_path):
    with pytest.raises(ValueError, match="exporter must be one of .* got 'onnx'"):
        export_onnx(model, tmp_path / 'a.onnx', exporter='onnx')
    with pytest.raises(TypeError, match='exports a SwinV2Backbone, got Linear'):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / 'a.onnx')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        export_onnx(model, tmp_path / 'missing' / 'a.onnx')
    with pytest.raises(ValueError, match='3 input channels'):
        export_onnx(model, tmp_path / 'a.onnx', example=torch.randn(1, 4, 32, 32))
    if not CPU_HALF:
        with pytest.raises(ValueError, match='cannot on the CPU: move the model to a CUDA GPU'):
            export_onnx(model, tmp_path / 'a.onnx', half=True, exporter='torchscript')
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('config, outputs', [
    # Mask2Former's head does not export whole (README, Deploy): its pixel decoder, deformable
    # attention in plain ops (grid_sample), does
    ('mask2former_swinv2-nano_shapes.py', ['mask_features', 'scale0', 'scale1', 'scale2']),
    ('mask-rcnn_swinv2-nano_shapes.py', [f'neck{i}' for i in range(5)]),
])
def test_backbone_and_neck_export_for_any_size(config, outputs, tmp_path):
    """``export_backbone_neck``: the features a head reads, one file for any batch and size,
    equal to PyTorch's at the example's size, odd sizes and a batch of 2."""
    from mmdet.apis import init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(ROOT / 'configs' / 'demo' / config)
    detector = randomize_(init_detector(cfg, None, device='cpu'))
    path = export_backbone_neck(detector, tmp_path / 'features.onnx',
                                example=torch.randn(1, 3, 128, 128))
    # exported in eval mode, and every part left in the mode it was in
    assert not any(m.training for m in detector.modules())
    meta = read_metadata(path)
    assert meta['outputs'] == outputs and meta['dynamic'] and meta['embed_dim'] == 32
    wrapper = BackboneNeck(detector)
    wrapper.out_features = outputs
    rows = check_onnx(wrapper, path, [(1, 128, 128), (2, 96, 160), (1, 97, 131)])
    assert [list(r['rel_err']) for r in rows] == [outputs] * 3
    assert worst(rows) < TOL, rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ['features.onnx']


def test_backbone_neck_refuses_a_model_without_one():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = small()
    with pytest.raises(ValueError, match='Plain has no neck and no pixel decoder'):
        BackboneNeck(Plain())
    with pytest.raises(TypeError, match=r'Linear has no SwinV2Backbone as \.backbone'):
        BackboneNeck(torch.nn.Linear(2, 2))


# the oldest environment exports through the library's functions above; the command line only
# the latest (CI time, tests/conftest.py)
@pytest.mark.latest_only
def test_tools_export_writes_a_file_and_checks_it(tmp_path):
    out = tmp_path / 'tiny.onnx'
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), '--arch', 'tiny',
                           '--out', str(out), '--exporter', 'torchscript', '--check'],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.exists() and 'wrote' in proc.stdout
    checks = [line for line in proc.stdout.splitlines() if line.startswith('check ')]
    assert len(checks) == 4
    errors = [float(e.split()[-1]) for line in checks for e in line.split(': ')[-1].split(', ')]
    assert len(errors) == 16 and max(errors) < TOL
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), '--arch', 'tiny',
                           '--out', str(tmp_path / 'no' / 'x.onnx'), '--exporter', 'torchscript'],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and 'does not exist' in proc.stderr


@pytest.mark.latest_only
def test_tools_export_neck_writes_the_features_a_head_reads(tmp_path):
    from mmdet.apis import init_detector
    from mmengine.config import Config
    config = ROOT / 'configs' / 'demo' / 'mask2former_swinv2-nano_shapes.py'
    detector = randomize_(init_detector(Config.fromfile(config), None, device='cpu'))
    torch.save({'state_dict': detector.state_dict()}, tmp_path / 'model.pth')
    out = tmp_path / 'features.onnx'
    tool = [sys.executable, str(ROOT / 'tools' / 'export.py'), '--out', str(out)]
    proc = subprocess.run([*tool, '--config', str(config), '--neck', '--check',
                           '--checkpoint', str(tmp_path / 'model.pth')],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'outputs mask_features, scale0, scale1, scale2' in proc.stdout
    checks = [line for line in proc.stdout.splitlines() if line.startswith('check ')]
    errors = [float(e.split()[-1]) for line in checks for e in line.split(': ')[-1].split(', ')]
    assert len(checks) == 4 and len(errors) == 16 and max(errors) < TOL
    # the weights are the checkpoint's: the file computes the randomised model's features
    wrapper = BackboneNeck(detector)
    wrapper.out_features = read_metadata(out)['outputs']
    assert worst(check_onnx(wrapper, out, [(1, 64, 64)])) < TOL
    proc = subprocess.run([*tool, '--neck'], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and '--neck exports a model built from --config' in proc.stderr


def test_while_a_graph_is_recorded_every_request_runs_the_plain_ops(model):
    from swinv2_backbone.runtime.execution import Request, decide
    seen = []

    def record(x):
        for requested in ('auto', 'cpu', 'batched', Request('batched', fused=True)):
            seen.append(decide(requested, x, model.parameters()))
        return x * 2

    torch.jit.trace(record, torch.randn(1, 3, 8, 8), check_trace=False)
    assert [(e.path, e.exporting, e.onednn, e.fused, e.cuda_graph) for e in seen] == \
        [('reference', True, False, False, False)] * 4
    assert not decide('auto', torch.randn(1, 3, 8, 8), model.parameters()).exporting
