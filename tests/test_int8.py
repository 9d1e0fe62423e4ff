"""int8 exports (swinv2_backbone.apps.quantize, tools/export.py --int8) and exported files run as
the backbone of mmdet/mmseg models (swinv2_backbone.hosts.exported.SwinV2Exported), through
tools/test.py. A tiny Mask R-CNN (the demo config) with random, trained-like weights."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from devkit.synthetic import make_shapes_dataset, shapes_cfg_options
from devkit.testing import randomize_, trained_biases_
from swinv2_backbone.apps.export import export_backbone_neck, export_onnx, read_metadata
from swinv2_backbone.apps.quantize import (file_errors, open_runtime, quantize,
                                           read_file_metadata)
from swinv2_backbone.hosts.exported import CHECKED, SwinV2Exported, calibration_inputs
from swinv2_backbone.hosts.runner import build_model, load_config

pytest.importorskip('openvino')
# nncf (the int8 extra) is in the latest environment only: it needs torch >= 2.3
HAS_NNCF = importlib.util.find_spec('nncf') is not None

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_shapes.py'


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp('shapes'), num_train=1, num_val=6,
                               size=128)


@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    """The demo Mask R-CNN with random trained-like weights, saved as a checkpoint."""
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG)).eval()
    randomize_(model.backbone)
    trained_biases_(model.backbone)
    path = tmp_path_factory.mktemp('ckpt') / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(
        dataset_meta=dict(classes=('circle', 'square', 'triangle')))), path)
    return model, path


@pytest.fixture(scope='module')
def files(detector, data, tmp_path_factory):
    """The backbone and the backbone + neck in float32; the backbone in int8 by each backend,
    the backbone + neck by onnxruntime (with these random weights, OpenVINO 2026.4's CPU plugin
    runs NNCF's int8 of it wrong: the FPN's pooled level comes out scaled by about 1e-4)."""
    model, _ = detector
    out = tmp_path_factory.mktemp('files')
    images = sorted((data / 'coco' / 'val').glob('*.jpg'))
    inputs = calibration_inputs(CONFIG, images)
    paths = dict(backbone=export_onnx(model.backbone, out / 'backbone.onnx'),
                 neck=export_backbone_neck(model, out / 'neck.onnx'))
    if HAS_NNCF:
        paths['backbone openvino'] = quantize(paths['backbone'], out / 'backbone_int8.xml',
                                              inputs, 'openvino')
    for name in ('backbone', 'neck'):
        paths[f'{name} onnxruntime'] = quantize(paths[name], out / f'{name}_int8.onnx', inputs,
                                                'onnxruntime')
    return paths, inputs


def test_calibration_inputs_are_what_the_test_pipeline_gives_the_model(data, detector):
    model, _ = detector
    images = sorted((data / 'coco' / 'val').glob('*.jpg'))
    inputs = calibration_inputs(CONFIG, images, count=2)
    assert len(inputs) == 2 and inputs[0].shape == (1, 3, 128, 128)
    from PIL import Image
    rgb = np.asarray(Image.open(images[0]).convert('RGB'), np.float32)
    mean = model.data_preprocessor.mean.view(3).numpy()
    std = model.data_preprocessor.std.view(3).numpy()
    np.testing.assert_allclose(inputs[0][0].transpose(1, 2, 0), (rgb - mean) / std, atol=0.05)


@pytest.mark.parametrize('name,backend', [('backbone', 'openvino'), ('backbone', 'onnxruntime'),
                                          ('neck', 'onnxruntime')])
def test_int8_files_keep_the_metadata_and_stay_near_float32(files, name, backend):
    if backend == 'openvino' and not HAS_NNCF:
        pytest.skip('nncf is not installed (the int8 extra, torch >= 2.3)')
    paths, inputs = files
    f32, int8 = paths[name], paths[f'{name} {backend}']
    meta, qmeta = read_metadata(f32), read_file_metadata(int8)
    assert {k: v for k, v in qmeta.items() if k != 'int8'} == meta
    assert qmeta['int8'].startswith('nncf' if backend == 'openvino' else 'onnxruntime')
    errors = file_errors(open_runtime(f32, backend), open_runtime(int8, backend), inputs)
    assert len(errors) == (4 if name == 'backbone' else 5)
    for e in errors:  # int8, not float32: close, but not equal
        assert 0 < e['rms'] < 0.25, errors


def test_one_call_of_an_openvino_file_is_one_inference(files, monkeypatch):
    import openvino as ov
    paths, inputs = files
    calls = []
    infer = ov.InferRequest.infer
    monkeypatch.setattr(ov.InferRequest, 'infer',
                        lambda self, *a, **k: calls.append(1) or infer(self, *a, **k))
    outputs = open_runtime(paths['neck'], 'openvino')(inputs[0])
    assert len(outputs) == 5 and len(calls) == 1
    reference = open_runtime(paths['neck'], 'onnxruntime')(inputs[0])
    for got, want in zip(outputs, reference):  # each output in its own place
        np.testing.assert_allclose(got, want, atol=1e-3 * float(np.abs(want).max()))


def test_an_exported_backbone_runs_inside_the_detector_like_pytorch(detector, files, data):
    from mmdet.structures import DetDataSample
    model, _ = detector
    cfg = load_config(CONFIG)
    paths, _ = files
    exported = SwinV2Exported(str(paths['backbone']), backbone=cfg.model.backbone).eval()
    from PIL import Image
    rgb = np.asarray(Image.open(sorted((data / 'coco' / 'val').glob('*.jpg'))[0]))
    img = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)  # BGR, as loaded
    sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        want = model.test_step(dict(inputs=[img], data_samples=[sample]))[0].pred_instances
        backbone, model.backbone = model.backbone, exported
        try:
            got = model.test_step(dict(inputs=[img], data_samples=[sample]))[0].pred_instances
        finally:
            model.backbone = backbone
    torch.testing.assert_close(got.scores[:10], want.scores[:10], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(got.bboxes[:10], want.bboxes[:10], atol=0.05, rtol=1e-3)


def test_a_file_that_does_not_match_the_config_is_refused(files):
    paths, _ = files
    backbone = dict(load_config(CONFIG).model.backbone, window_size=8)
    with pytest.raises(ValueError, match='window_sizes: the config gives'):
        SwinV2Exported(str(paths['backbone']), backbone=backbone)
    assert set(CHECKED) <= set(read_metadata(paths['backbone']))
    with pytest.raises(FileNotFoundError, match='exported file not found'):
        SwinV2Exported('missing.xml')
    with pytest.raises(RuntimeError, match='inference only'):
        SwinV2Exported(str(paths['backbone'])).train()(torch.zeros(1, 3, 32, 32))


def test_tools_test_evaluates_a_detector_whose_backbone_and_neck_run_int8(
        detector, files, data, tmp_path):
    _, checkpoint = detector
    paths, _ = files
    config = tmp_path / 'int8.py'
    config.write_text(
        f"_base_ = [{str(CONFIG)!r}]\n"
        f"model = dict(backbone=dict(_delete_=True, type='SwinV2Exported',\n"
        f"                           file={str(paths['neck onnxruntime'])!r},\n"
        f"                           runtime='onnxruntime'),\n"
        f"             neck=None)\n")
    options = [f'{k}={v}' for k, v in shapes_cfg_options(data, 'mmdet').items()]
    run = subprocess.run([sys.executable, str(ROOT / 'tools' / 'test.py'), str(config),
                          str(checkpoint), '--work-dir', str(tmp_path / 'work'),
                          '--cfg-options', *options], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "'coco/bbox_mAP'" in run.stdout and "'coco/segm_mAP'" in run.stdout


@pytest.mark.skipif(not HAS_NNCF, reason='nncf is not installed (the int8 extra, torch >= 2.3)')
def test_nncf_smooth_quant_is_applied_unless_turned_off(files, tmp_path):
    paths, inputs = files  # the fixture's OpenVINO file has it on, the default
    off = quantize(paths['backbone'], tmp_path / 'off.xml', inputs, 'openvino',
                   smooth_quant=False)
    counts = [path.read_text().count('/nncf_smooth_quant"')
              for path in (paths['backbone openvino'], off)]
    assert counts[0] > 0 and counts[1] == 0, counts


def test_export_tool_writes_an_int8_copy_and_prints_each_outputs_error(detector, data,
                                                                       tmp_path):
    _, checkpoint = detector
    out = tmp_path / 'neck.onnx'
    run = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), '--config',
                          str(CONFIG), '--checkpoint', str(checkpoint), '--neck', '--out',
                          str(out), '--int8', '--calib', str(data / 'coco' / 'val'),
                          '--calib-count', '3', '--int8-backend', 'onnxruntime'],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f'wrote {tmp_path / "neck_int8.onnx"} (onnxruntime, 3 calibration images' in run.stdout
    errors = next(line for line in run.stdout.splitlines() if line.startswith('int8 against'))
    assert [part.split()[0] for part in errors.split(': ', 1)[1].split(', ')] == [
        f'neck{i}' for i in range(5)]  # the neck's outputs, not the backbone's stages
    assert read_file_metadata(tmp_path / 'neck_int8.onnx')['outputs'] == [
        f'neck{i}' for i in range(5)]
