"""Parameters and FLOPs of a config's model as it predicts, in total and per part."""
from __future__ import annotations

import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.hosts.runner import build_model, host_of, load_config

__all__ = ['default_shape', 'flop_analyzer', 'model_complexity']


def flop_analyzer(model: nn.Module, inputs: tuple) -> FlopAnalyzer:
    """mmengine's FlopAnalyzer without its warnings. Trace it without autograd
    (``torch.no_grad``) so that no custom autograd function hides ops."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


class _Predict(nn.Module):
    """The whole model as it predicts (``_forward``: backbone, neck and heads, with the
    proposal and query counts of its ``test_cfg``) for one image of a fixed size."""

    def __init__(self, model: nn.Module, host: str, height: int, width: int) -> None:
        super().__init__()
        self.model = model
        if host == 'mmdet':
            from mmdet.structures import DetDataSample as Sample
        else:
            from mmseg.structures import SegDataSample as Sample
        shape = (height, width)
        self.sample = Sample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                           batch_input_shape=shape, scale_factor=(1.0, 1.0)))

    def forward(self, x: torch.Tensor):
        return self.model._forward(x, [self.sample])


def default_shape(cfg) -> tuple[int, int]:
    """The input size a config's model is usually measured at: the crop of a segmentation
    config (ADE20K: 512 x 512), else the test pipeline's resize (keep-ratio: short x long
    side), padded as its data preprocessor pads."""
    if cfg.get('crop_size'):
        return tuple(cfg.crop_size)
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.get('pipeline', [])
    for step in pipeline:
        if step.get('type') == 'Resize' and step.get('scale'):
            w, h = step['scale']
            if step.get('keep_ratio'):
                h, w = min(h, w), max(h, w)
            divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
            return -(-h // divisor) * divisor, -(-w // divisor) * divisor
    raise ValueError('no crop_size or test-pipeline Resize in the config: give --shape H W')


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_complexity(config: str, height: int | None = None,
                     width: int | None = None) -> dict:
    """Parameter counts and GFLOPs (one multiply-add = one FLOP, as mmengine counts) of the
    model in ``config`` predicting one (3, height, width) image (default: :func:`default_shape`),
    in total and per part (``backbone``, ``neck``, the heads: the model's children)."""
    cfg = load_config(config)
    host = host_of(cfg)
    if height is None or width is None:
        height, width = default_shape(cfg)
    model = build_model(cfg).eval()  # counting needs no pretrained weights
    for m in model.modules():
        if isinstance(m, SwinV2Backbone):
            m.execution = 'reference'  # the same arithmetic in plain ops, which FlopAnalyzer counts
    flops = flop_analyzer(_Predict(model, host, height, width), (torch.randn(1, 3, height, width),))
    with torch.no_grad():  # traced without autograd: no custom autograd functions to hide ops
        by_module = flops.by_module()
    parts = [name for name, child in model.named_children() if _count(child)]
    return dict(
        host=host, input=(3, height, width),
        params_total=_count(model), gflops_total=flops.total() / 1e9,
        params={name: _count(getattr(model, name)) for name in parts},
        gflops={name: by_module.get(f'model.{name}', 0) / 1e9 for name in parts},
    )
