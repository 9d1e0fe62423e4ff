"""Parameters and FLOPs of a config's model (backbone and neck traced; heads parameters only)."""
from __future__ import annotations

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.registry import init_default_scope
from torch import nn

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.runner import adapt_to_cpu, host_of, load_config

__all__ = ['flop_analyzer', 'model_complexity']


def flop_analyzer(model: nn.Module, inputs: tuple) -> FlopAnalyzer:
    """mmengine's FlopAnalyzer without its warnings. Trace it without autograd
    (``torch.no_grad``) so that no custom autograd function hides ops."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


class _Features(nn.Module):
    """backbone (+ neck): the dense part whose cost grows with the image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.neck = getattr(model, 'neck', None)

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def model_complexity(config: str, height: int, width: int) -> dict:
    """Parameter counts and GFLOPs (one multiply-add = one FLOP, as mmengine counts) of the
    model in ``config`` for a (1, 3, height, width) input."""
    cfg = load_config(config)
    host = host_of(cfg)
    adapt_to_cpu(cfg)
    init_default_scope(host)
    registry = __import__(f'{host}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model).eval()
    for m in model.modules():
        if isinstance(m, SwinV2Backbone):
            m.execution = 'reference'  # the same arithmetic in plain ops, which FlopAnalyzer counts
    features = _Features(model)
    x = torch.randn(1, 3, height, width)
    flops = flop_analyzer(features, (x,))
    with torch.no_grad():  # traced without autograd: no custom autograd functions to hide ops
        by_module = flops.by_module()
    return dict(
        host=host, input=(3, height, width),
        params_total=_count(model), params_backbone=_count(model.backbone),
        params_neck=_count(getattr(model, 'neck', None)),
        gflops_backbone=by_module['backbone'] / 1e9,
        gflops_neck=by_module.get('neck', 0) / 1e9,
    )
