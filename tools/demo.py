#!/usr/bin/env python
"""Demo: build SwinV2-T from an mmdet-style config and print the feature pyramid of an image.

The image is generated (a few coloured shapes on a gradient) at an odd size, 333 x 517, to show
that any size works. Runs on CPU in a few seconds.
"""
from __future__ import annotations

import time

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

CONFIG = """
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)
backbone = dict(type='SwinV2Backbone', arch='tiny', window_size=16,
                pretrained_window_sizes=(8, 8, 8, 8), out_indices=(0, 1, 2, 3))
"""


def synthetic_image(h: int, w: int) -> torch.Tensor:
    """(1, 3, h, w) float image: a gradient with a bright square and a dark disc."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing='ij')
    img = torch.stack([xx, yy, 1 - xx]) * 0.5
    img[:, h // 5:h // 2, w // 6:w // 3] = torch.tensor([1.0, 0.9, 0.1])[:, None, None]
    img[:, ((yy - 0.7) ** 2 + (xx - 0.7) ** 2) < 0.02] = 0.05
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((img - mean) / std)[None]


def main() -> None:
    cfg = Config.fromstring(CONFIG, file_format='.py')  # imports swinv2_backbone
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.backbone)
    model.init_weights()
    model.eval()
    x = synthetic_image(333, 517)
    start = time.perf_counter()
    with torch.no_grad():
        feats = model(x)
    elapsed = time.perf_counter() - start
    print(f'SwinV2-T, windows {model.window_sizes}, input {tuple(x.shape)}, '
          f'{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, '
          f'forward {elapsed * 1000:.0f} ms on {torch.get_num_threads()} threads')
    print(f'{"name":8} {"stride":>6} {"channels":>8}  shape')
    for name, stride, ch, f in zip(model.out_features, model.out_strides, model.out_channels,
                                   feats):
        assert f.shape[1] == ch and torch.isfinite(f).all()
        print(f'{name:8} {stride:6d} {ch:8d}  {tuple(f.shape)}  mean {f.mean():+.3f} '
              f'std {f.std():.3f}')


if __name__ == '__main__':
    main()
