"""Whole detectors and segmenters through mmdeploy (configs/deploy/, swinv2_backbone.apps.deploy).

Each model is exported once with dynamic shapes through mmdeploy's ``torch2onnx`` and the file
runs in mmdeploy's ONNX Runtime backend (with its custom ops) on images of the shapes data at
three sizes, beside PyTorch through the same pipeline. Weights are random, scaled so that
predictions are not trivial (several classes, hundreds of boxes).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from devkit.testing import randomize_
from devkit.synthetic import make_shapes_dataset
from mmengine.config import Config

import swinv2_backbone  # noqa: F401 - registers the rewrites with mmdeploy
from swinv2_backbone import ops
from swinv2_backbone.apps import deploy
from swinv2_backbone.compat import TORCHSCRIPT_EXPORT

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / 'configs' / 'deploy'
# the example's size, odd sides, a larger one
SIZES = [(128, 128), (97, 131), (256, 320)]
NANO = dict(arch=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16)),
            window_size=4, pretrained_window_sizes=0, init_cfg=None)


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> list[np.ndarray]:
    """Shapes-data images (BGR uint8) resized to SIZES, with noise: flat backgrounds give
    anchors with exactly equal scores, which NMS may keep either of."""
    root = make_shapes_dataset(tmp_path_factory.mktemp('shapes'), num_train=1,
                               num_val=len(SIZES), size=128)
    files = sorted((root / 'ade' / 'images' / 'validation').glob('*.jpg'))
    rng = np.random.default_rng(0)
    return [np.clip(cv2.resize(cv2.imread(str(f)), (w, h)) + rng.normal(0, 8, (h, w, 3)),
                    0, 255).astype(np.uint8) for f, (h, w) in zip(files, SIZES)]


@pytest.mark.parametrize('size', [(4, 4), (7, 9), (13, 5), (1, 1), (42, 42)])
@pytest.mark.parametrize('out', [1, 2, 3, 6, (2, 5)])
def test_adaptive_avg_pool2d_equals_torch(size, out):
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(ops.adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(x, out))


def test_adaptive_avg_pool2d_exports_for_any_size(tmp_path):
    """Pyramid pooling's grids, exported at one size with dynamic axes, pool every size."""
    class Pyramid(torch.nn.Module):
        def forward(self, x):
            return torch.cat([ops.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 2, 3, 6)], 2)

    path = tmp_path / 'pool.onnx'
    torch.onnx.export(Pyramid(), (torch.randn(1, 4, 12, 12),), str(path), opset_version=11,
                      input_names=['x'], dynamic_axes={'x': {0: 'b', 2: 'h', 3: 'w'}},
                      **TORCHSCRIPT_EXPORT)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    for shape in [(1, 4, 12, 12), (2, 4, 4, 4), (1, 4, 7, 19), (1, 4, 25, 9)]:
        x = torch.randn(shape)
        (got,) = session.run(None, {'x': x.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), Pyramid()(x), atol=1e-5, rtol=1e-5)


def _export_and_predict(tmp_path, deploy_cfg, cfg, model, images):
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    path = deploy.export_model(deploy_cfg, cfg, checkpoint, images[0], tmp_path / 'end2end.onnx')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['end2end.onnx', 'model.pth']
    graph = onnx.load(str(path)).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == [
        'batch', '', 'height', 'width']
    return deploy.predict(deploy_cfg, cfg, checkpoint, path, images)


def test_upernet_exports_dynamic_and_predicts_what_pytorch_predicts(tmp_path, images):
    from mmseg.apis import init_model
    cfg = Config.fromfile(ROOT / 'configs' / 'demo' / 'upernet_swinv2-nano_shapes.py')
    model = randomize_(init_model(cfg, None, device='cpu'))
    with torch.no_grad():  # classes that vary over the image
        model.decode_head.conv_seg.weight *= 20
        model.decode_head.conv_seg.bias.zero_()
    deploy_cfg = Config.fromfile(DEPLOY / 'segmentation_onnxruntime_dynamic.py')
    pairs = _export_and_predict(tmp_path, deploy_cfg, cfg, model, images)
    for (ours, ref), (h, w) in zip(pairs, SIZES):
        assert ours.pred_sem_seg.data.shape == ref.pred_sem_seg.data.shape == (1, h, w)
        assert len(ref.pred_sem_seg.data.unique()) >= 2  # not a constant map
        # the 128 px image's last stage is 4 x 4, smaller than the 6 x 6 pyramid pooling grid
        got = deploy.agreement(ours, ref)
        print('upernet', (h, w), got)  # pytest -rP shows the measured agreement
        assert got['pixels_equal'] >= 0.999, (h, w)


def _small_detector(config: str, **test_cfg) -> Config:
    cfg = Config.fromfile(ROOT / 'configs' / 'mmdet' / config)
    cfg.model.backbone.update(NANO)
    cfg.model.neck.in_channels = [64, 128, 256]
    cfg.model.test_cfg.update(test_cfg)
    return cfg


# the oldest environment deploys Mask R-CNN and the segmenters; these two detectors only the
# latest (CI time, tests/conftest.py)
@pytest.mark.latest_only
def test_retinanet_exports_dynamic_and_predicts_what_pytorch_predicts(tmp_path, images):
    from mmdet.apis import init_detector
    # Every box above the threshold is kept on both sides: no cut by count (mmdet ranks
    # before NMS per (anchor, class) pair, mmdeploy per anchor) and no suppression (random
    # weights give many overlapping boxes whose scores differ by less than the float error,
    # which NMS would keep either of)
    cfg = _small_detector('retinanet_swinv2-t-w16_fpn_1x_coco.py', score_thr=0.97,
                          nms_pre=100_000, max_per_img=2000,
                          nms=dict(type='nms', iou_threshold=1.0))
    cfg.model.bbox_head.num_classes = 3
    # mmdeploy clips boxes to the padded input, mmdet to the image: boxes in the padding would
    # overlap differently in NMS
    cfg.model.bbox_head.bbox_coder.clip_border = False
    model = randomize_(init_detector(cfg, None, device='cpu'))
    with torch.no_grad():  # confident classes, boxes of plausible sizes
        model.bbox_head.retina_cls.weight *= 20
        model.bbox_head.retina_cls.bias.zero_()
        model.bbox_head.retina_reg.weight *= 0.1
    deploy_cfg = Config.fromfile(DEPLOY / 'detection_onnxruntime_dynamic.py')
    deploy_cfg.codebase_config.post_processing.update(max_output_boxes_per_class=2000)
    pairs = _export_and_predict(tmp_path, deploy_cfg, cfg, model, images)
    for (ours, ref), size in zip(pairs, SIZES):
        got = deploy.agreement(ours, ref)
        print('retinanet', size, got)
        assert got['ref_detections'] >= 10, (size, got)
        assert got['detections'] == got['ref_detections'], (size, got)
        assert got['box_rel_err'] <= 1e-3 and got['score_err'] <= 1e-4, (size, got)


@pytest.mark.latest_only
def test_dino_exports_dynamic_and_predicts_what_pytorch_predicts(tmp_path, images):
    """DINO (query-based, deformable attention): mmdeploy's rewrites export it with the
    detection config; the same detections at every size."""
    from mmdet.apis import init_detector
    config = ROOT / 'configs' / 'demo' / 'dino_swinv2-nano_shapes.py'
    # a config of its own: building the detector writes into its head's settings
    model = randomize_(init_detector(Config.fromfile(config), None, device='cpu'))
    deploy_cfg = Config.fromfile(DEPLOY / 'detection_onnxruntime_dynamic.py')
    pairs = _export_and_predict(tmp_path, deploy_cfg, Config.fromfile(config), model, images)
    for (ours, ref), size in zip(pairs, SIZES):
        got = deploy.agreement(ours, ref)
        print('dino', size, got)
        assert got['detections'] == got['ref_detections'] == 50, (size, got)
        assert got['box_rel_err'] <= 1e-3 and got['score_err'] <= 1e-4, (size, got)


def test_mask_rcnn_exports_dynamic_and_runs_at_every_size(tmp_path, images):
    """Two-stage: mmdeploy's RoIAlign symbolic needs a torch helper newer torch releases
    removed; ours (swinv2_backbone.apps.deploy) exports it. mmdeploy's RPN suppresses proposals
    across pyramid levels where mmdet's does it per level, so its proposals differ and only
    the form of the predictions is compared (the agreement is printed)."""
    from mmdet.apis import init_detector
    cfg = Config.fromfile(ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_shapes.py')
    model = randomize_(init_detector(cfg, None, device='cpu'))
    deploy_cfg = Config.fromfile(DEPLOY / 'instance-seg_onnxruntime_dynamic.py')
    pairs = _export_and_predict(tmp_path, deploy_cfg, cfg, model, images)
    for (ours, ref), (h, w) in zip(pairs, SIZES):
        print('mask-rcnn', (h, w), deploy.agreement(ours, ref))
        a, b = ours.pred_instances, ref.pred_instances
        assert len(a) == len(b) == cfg.model.test_cfg.rcnn.max_per_img
        assert a.masks.shape == b.masks.shape == (len(b), h, w)
        assert a.bboxes.shape == (len(b), 4) and set(a.labels.tolist()) <= {0, 1, 2}


def test_export_model_refuses_a_name_mmdeploy_would_change(tmp_path):
    with pytest.raises(ValueError, match=r'must end in \.onnx'):
        deploy.export_model(DEPLOY / 'detection_onnxruntime_dynamic.py', None, None, None,
                            tmp_path / 'model.bin')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        deploy.export_model(DEPLOY / 'detection_onnxruntime_dynamic.py', None, None, None,
                            tmp_path / 'missing' / 'model.onnx')


def test_deploy_tool_exports_and_checks_a_segmenter(tmp_path, images):
    from mmseg.apis import init_model
    config = ROOT / 'configs' / 'demo' / 'upernet_swinv2-nano_shapes.py'
    model = init_model(Config.fromfile(config), None, device='cpu')
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'model.pth')
    files = []
    for i, image in enumerate(images[:2]):
        files.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(files[-1], image)
    tool = [sys.executable, str(ROOT / 'tools' / 'deploy.py'),
            str(DEPLOY / 'segmentation_onnxruntime_dynamic.py'), str(config)]
    proc = subprocess.run([*tool, str(tmp_path / 'model.pth'), files[0],
                           '--out', str(tmp_path / 'upernet.onnx'), '--check', *files,
                           '--int8', '--calib', *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'wrote {tmp_path / "upernet.onnx"}' in proc.stdout
    assert f'wrote {tmp_path / "upernet_int8.onnx"} (onnxruntime QDQ' in proc.stdout
    checks = [line for line in proc.stdout.splitlines() if line.startswith('check ')]
    print(checks)  # pytest -rP shows the measured agreement
    assert [c.split(':')[0] for c in checks] == [
        *(f'check {f}' for f in files), *(f'check {f} (int8)' for f in files)]
    equal = [float(c.split('pixels_equal ')[1]) for c in checks]
    # random weights: close classes flip under int8 (0.94-0.97 here; the demo's trained
    # UperNet keeps at least 0.998, BENCHMARKS.md)
    assert min(equal[:len(files)]) >= 0.999 and min(equal[len(files):]) >= 0.9, checks
    from onnx import load
    nodes = [n.op_type for n in load(str(tmp_path / 'upernet_int8.onnx')).graph.node]
    assert nodes.count('DequantizeLinear') > 50  # quantized, not a copy
    proc = subprocess.run([*tool, str(tmp_path / 'missing.pth'), files[0], '--out',
                           str(tmp_path / 'x.onnx')], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"error: checkpoint '{tmp_path / 'missing.pth'}' does not exist" in proc.stderr
