"""Whole detectors and segmenters through mmdeploy: the rewrites they need, registered with it.

mmdeploy exports an OpenMMLab model by running it under its rewriter context, which swaps
functions for export-friendly versions per backend. The backbone needs none: while a graph is
recorded it computes windows, padding and masks from the input's shape (``SwinV2Stage``).
What the models around it need is registered here, when mmdeploy is installed
(:func:`swinv2_backbone.hosts.registry.register_all` imports this module), as mmdeploy registers the
rewrites of its own models:

- ``torch.onnx.export``: mmdeploy 1.3 calls it without choosing an exporter, and from torch 2.9
  the default is the dynamo exporter, which its rewrites (symbolic functions, ``mark`` nodes,
  graph passes) were not written for: it fails on the first model. The TorchScript exporter is
  chosen (:data:`swinv2_backbone.compat.TORCHSCRIPT_EXPORT`).
- ``F.adaptive_avg_pool2d``, for the runtimes of ``configs/deploy/`` (ONNX Runtime, OpenVINO,
  TensorRT): mmdeploy replaces it with an ``avg_pool2d`` whose kernel is computed from the
  example's size, so a UperNet or PSPNet exported with dynamic shapes pools other sizes wrongly,
  and the export fails where the map is smaller than the pooling grid (UperNet's 6x6 on the 4x4
  last stage of a 128 px image: "stride should not be zero").
  :func:`swinv2_backbone.ops.adaptive_avg_pool2d` computes the bins in the graph.
- mmcv's ``RoIAlign`` symbolic, for ONNX Runtime and OpenVINO (two-stage detectors: Mask R-CNN,
  Cascade, HTC): mmdeploy's emits ONNX's ``RoiAlign`` through a private torch helper
  (``symbolic_opset9._cast_Long``) that newer torch releases removed ("cannot import name
  '_cast_Long'"). Ours emits the same graph with ONNX ops only.

:func:`export_model` and :func:`predict` run mmdeploy's export and its backend beside PyTorch,
:func:`agreement` measures how far they are apart (``tools/deploy.py``, ``tests/test_deploy.py``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.utils import get_ir_config

from .. import ops
from ..compat import TORCHSCRIPT_EXPORT

__all__ = ['POOL_BACKENDS', 'ROI_ALIGN_BACKENDS', 'agreement', 'export_model', 'predict']

POOL_BACKENDS = ('onnxruntime', 'openvino', 'tensorrt')
ROI_ALIGN_BACKENDS = ('onnxruntime', 'openvino')
# ONNX's TensorProto.INT64
_INT64 = 7


def _onnx_export_torchscript(*args, **kwargs):
    ctx = FUNCTION_REWRITER.get_context()
    return ctx.origin_func(*args, **{**TORCHSCRIPT_EXPORT, **kwargs})


def _adaptive_avg_pool2d(input, output_size):
    return ops.adaptive_avg_pool2d(input, output_size)


def _roi_align(g, input, rois, output_size, spatial_scale, sampling_ratio, pool_mode, aligned):
    """mmcv's RoIAlign (rois: K x 5, batch index then x1 y1 x2 y2) as ONNX's ``RoiAlign``."""
    opset = get_ir_config(SYMBOLIC_REWRITER.get_context().cfg).get('opset_version', 11)

    def const(value, dtype=torch.long):
        return g.op('Constant', value_t=torch.tensor(value, dtype=dtype))

    index = g.op('Cast', g.op('Gather', rois, const(0), axis_i=1), to_i=_INT64)
    boxes = g.op('Gather', rois, const([1, 2, 3, 4]), axis_i=1)
    attrs = dict(output_height_i=output_size[0], output_width_i=output_size[1],
                 spatial_scale_f=spatial_scale, sampling_ratio_i=sampling_ratio,
                 mode_s=pool_mode)
    if opset >= 16:  # the half-pixel shift of aligned=True is an attribute from opset 16
        attrs['coordinate_transformation_mode_s'] = ('half_pixel' if aligned
                                                     else 'output_half_pixel')
    elif aligned:
        boxes = g.op('Add', boxes, const([-0.5 / spatial_scale], torch.float))
    return g.op('RoiAlign', input, boxes, index, **attrs)


if TORCHSCRIPT_EXPORT:  # torch < 2.5 has only the TorchScript exporter
    FUNCTION_REWRITER.register_rewriter('torch.onnx.export')(_onnx_export_torchscript)
for _backend in POOL_BACKENDS:
    FUNCTION_REWRITER.register_rewriter('torch.nn.functional.adaptive_avg_pool2d',
                                        backend=_backend)(_adaptive_avg_pool2d)
for _backend in ROI_ALIGN_BACKENDS:
    # mmcv.ops.roi_align is RoIAlignFunction.apply; __self__ is the autograd function
    SYMBOLIC_REWRITER.register_symbolic('mmcv.ops.roi_align.__self__',
                                        backend=_backend)(_roi_align)


def export_model(deploy_cfg, model_cfg, checkpoint: str | os.PathLike | None, image,
                 path: str | os.PathLike, device: str = 'cpu') -> Path:
    """mmdeploy's ``torch2onnx`` of a whole detector or segmenter, written atomically to ``path``.

    Args:
        deploy_cfg, model_cfg: config paths or ``mmengine.Config`` objects.
        checkpoint: the model's weights (None: its initialisation).
        image: the example the graph is recorded with, a path or an H x W x 3 BGR uint8 array;
            with dynamic axes in ``deploy_cfg`` the file takes other sizes too.
        path: the ``.onnx`` file to write; its folder must exist.
    """
    from mmdeploy.apis import torch2onnx
    path = Path(path)
    if path.suffix != '.onnx':  # mmdeploy would append it
        raise ValueError(f'output {str(path)!r}: the file name must end in .onnx')
    if not path.parent.is_dir():
        raise FileNotFoundError(f'output folder {str(path.parent)!r} does not exist')
    # written in a folder beside the target, then renamed: a failed export leaves the old file
    with tempfile.TemporaryDirectory(prefix=f'.{path.name}.', dir=path.parent) as tmp:
        torch2onnx(image, tmp, path.name, deploy_cfg, model_cfg, checkpoint, device)
        os.replace(Path(tmp) / path.name, path)
    return path


def predict(deploy_cfg, model_cfg, checkpoint: str | None, onnx_file: str | os.PathLike,
            images: list, device: str = 'cpu') -> list[tuple]:
    """``(backend prediction, PyTorch prediction)`` per image, through mmdeploy's task
    processor: the same pipeline and post-processing for both, images one at a time."""
    from mmdeploy.apis.utils import build_task_processor
    from mmengine import Config
    model_cfg = model_cfg if isinstance(model_cfg, Config) else Config.fromfile(model_cfg)
    deploy_cfg = deploy_cfg if isinstance(deploy_cfg, Config) else Config.fromfile(deploy_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, device)
    backend = processor.build_backend_model([str(onnx_file)])
    model = processor.build_pytorch_model(checkpoint)
    pairs = []
    for image in images:
        inputs, _ = processor.create_input(image, input_shape=None)
        with torch.no_grad():
            pairs.append((backend.test_step(inputs)[0], model.test_step(inputs)[0]))
    return pairs


def agreement(ours, ref) -> dict[str, float]:
    """How far a backend's prediction is from PyTorch's.

    Segmentation: ``pixels_equal``, the fraction of pixels with the same class. Detection:
    ``detections`` and ``ref_detections`` (counts) and, matching each detection to the nearest
    one of the same label in the other prediction (equal scores make any order arbitrary):
    ``box_rel_err``, the largest distance to that match over both predictions (max over the
    coordinates of |ours - ref| / max(|ref|, 1); inf when a label has no counterpart),
    ``score_err`` (max abs over the matches) and, with masks, ``mask_pixels_equal``. Boxes are
    clipped to the image first: mmdeploy's graph clips them to the padded input, mmdet to the
    resized image, so a box crossing the right or bottom edge differs by the padding.
    """
    if 'pred_sem_seg' in ref:
        a, b = ours.pred_sem_seg.data, ref.pred_sem_seg.data
        return dict(pixels_equal=(a == b).float().mean().item())
    a, b = ours.pred_instances, ref.pred_instances
    out = dict(detections=len(a), ref_detections=len(b))
    if not len(a) or not len(b):
        return out
    h, w = ref.metainfo['ori_shape'][:2]
    limit = a.bboxes.new_tensor([w, h, w, h])
    boxes_a, boxes_b = (torch.minimum(p.bboxes, limit).clamp(min=0) for p in (a, b))
    dist = ((boxes_a[:, None] - boxes_b[None]).abs() / boxes_b[None].abs().clamp(min=1)).amax(-1)
    dist[a.labels[:, None] != b.labels[None]] = float('inf')
    nearest, match = dist.min(0)  # for each reference detection, ours nearest to it
    out.update(box_rel_err=max(nearest.max().item(), dist.min(1).values.max().item()),
               score_err=(a.scores[match] - b.scores).abs().max().item())
    if 'masks' in a and 'masks' in b:
        out['mask_pixels_equal'] = (a.masks[match] == b.masks).float().mean().item()
    return out
