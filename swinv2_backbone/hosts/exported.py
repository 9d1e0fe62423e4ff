"""An exported backbone (or backbone + neck) run by onnxruntime or OpenVINO inside an mmdet or
mmseg model, and the calibration inputs of a model config.

    model = dict(backbone=dict(type='SwinV2Exported', file='swinv2_int8.xml',
                               backbone=<the config's SwinV2Backbone dict>), ...)

``SwinV2Exported`` runs the file on the CPU (f32, OpenVINO's bf16 hint, or an int8 file) and
returns its outputs as the backbone's: the heads stay in PyTorch, and the host's tools,
pipelines and inferencers work as before. It checks the file's metadata against the backbone
dict it replaces (architecture, windows, outputs) and refuses a file that does not match.
A backbone + neck file (``export_backbone_neck``) goes with ``neck=None``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from mmengine.model import BaseModule

from ..apps.quantize import open_runtime, output_names, read_file_metadata
from .runner import host_of, load_config, meta_backbone

__all__ = ['SwinV2Exported', 'add_calibration_args', 'calibration_inputs']

# the metadata a backbone dict determines, checked against the file's
CHECKED = ('embed_dim', 'depths', 'num_heads', 'window_sizes', 'out_features', 'out_channels',
           'out_strides')


def _expected(backbone: dict) -> dict:
    model = meta_backbone(backbone)
    return {'embed_dim': model.num_features[0], 'depths': list(model.depths),
            'num_heads': list(model.num_heads), 'window_sizes': list(model.window_sizes),
            'out_features': list(model.out_features), 'out_channels': list(model.out_channels),
            'out_strides': list(model.out_strides)}


class SwinV2Exported(BaseModule):
    """Runs an exported SwinV2 file as a backbone.

    Args:
        file: an ``.onnx`` file (``export_onnx``, ``export_backbone_neck``, or int8 QDQ) or an
            OpenVINO ``.xml`` (int8 by ``apps.quantize``).
        backbone: the ``SwinV2Backbone`` dict the file was exported from; its architecture,
            windows and outputs must match the file's metadata. None: not checked.
        runtime: 'openvino' or 'onnxruntime' ('onnxruntime' runs ``.onnx`` files only).
        hint: OpenVINO's inference precision, 'f32' or 'bf16'.
        threads: runtime threads (None: torch's).
    """

    def __init__(self, file: str, backbone: dict | None = None, runtime: str = 'openvino',
                 hint: str = 'f32', threads: int | None = None, init_cfg=None) -> None:
        super().__init__(init_cfg)
        if runtime not in ('openvino', 'onnxruntime'):
            raise ValueError(f"runtime must be 'openvino' or 'onnxruntime', got {runtime!r}")
        if runtime == 'onnxruntime' and Path(file).suffix != '.onnx':
            raise ValueError(f'onnxruntime runs .onnx files, not {file}')
        if hint not in ('f32', 'bf16'):
            raise ValueError(f"hint must be 'f32' or 'bf16', got {hint!r}")
        self.file, self.runtime, self.hint = str(file), runtime, hint
        self.metadata = read_file_metadata(file)
        if backbone is not None:
            self._check(backbone)
        self.out_features = output_names(self.metadata)
        self.threads = threads
        self._run = None

    def _check(self, backbone: dict) -> None:
        want = _expected(backbone)
        wrong = [f'{k}: the config gives {want[k]}, the file {self.metadata.get(k)}'
                 for k in CHECKED if self.metadata.get(k) != want[k]]
        if wrong:
            raise ValueError(f'{self.file} does not match the backbone it replaces: '
                             + '; '.join(wrong))

    def _load(self) -> None:
        self._run = open_runtime(self.file, self.runtime, self.hint,
                                 self.threads or torch.get_num_threads())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> the file's outputs, as float32 tensors on ``x``'s device."""
        if self.training:
            raise RuntimeError('SwinV2Exported runs inference only: an exported file has no '
                               'gradients (train with SwinV2Backbone, then export)')
        if self._run is None:
            self._load()
        outputs = self._run(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return tuple(torch.from_numpy(np.asarray(o, np.float32)).to(x.device)
                     for o in outputs)

    def init_weights(self) -> None:
        """Nothing to initialise: the weights are in the file."""


def calibration_inputs(config, images: Iterable[str | os.PathLike],
                       count: int | None = None) -> list[np.ndarray]:
    """(1, 3, H, W) float32 model inputs of up to ``count`` images: the config's test pipeline
    without its annotation loading, then its model's data preprocessor."""
    import importlib

    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    cfg = load_config(config) if isinstance(config, (str, os.PathLike)) else config
    host = host_of(cfg)
    init_default_scope(host)
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if 'LoadAnnotations' not in t['type']])
    preprocessor = importlib.import_module(f'{host}.registry').MODELS.build(
        cfg.model.data_preprocessor)
    inputs = []
    for path in list(images)[:count]:
        packed = pipeline(dict(img_path=str(path), img_id=0))
        batch = preprocessor(dict(inputs=[packed['inputs']],
                                  data_samples=[packed['data_samples']]), False)
        inputs.append(batch['inputs'].float().numpy())
    if not inputs:
        raise ValueError('no calibration image')
    return inputs


def add_calibration_args(parser) -> None:
    """``--calib IMAGES`` and ``--calib-count N``: the images :func:`calibration_inputs` reads."""
    parser.add_argument('--calib', nargs='+', metavar='IMAGES',
                        help='calibration images: files, folders or glob patterns')
    parser.add_argument('--calib-count', type=int, default=32,
                        help='calibration images used, at most (default 32)')
