"""Optimizer construction for SwinV2 fine-tuning: optional layer-wise learning-rate decay."""
from __future__ import annotations

import re

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['SwinV2LayerDecayOptimWrapperConstructor', 'layer_id']


def layer_id(name: str, depths: tuple[int, ...]) -> int:
    """Depth of a parameter: 0 for the stem, 1..sum(depths) for blocks, sum(depths) + 1 for the
    rest (output norms, neck, heads). A patch merging counts with the first block it feeds."""
    if m := re.search(r'(?:^|\.)backbone\.(.*)', '.' + name):
        rest = m.group(1)
        if rest.startswith(('patch_embed.', 'absolute_pos_embed')):
            return 0
        if s := re.match(r'stages\.(\d+)\.(?:blocks\.(\d+)|downsample)\.', rest):
            stage = int(s.group(1))
            return 1 + sum(depths[:stage]) + int(s.group(2) or 0)
    return sum(depths) + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SwinV2LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus ``paramwise_cfg.layer_decay_rate``.

    A parameter at :func:`layer_id` ``i`` of ``L = sum(depths) + 1`` gets ``lr * rate**(L - i)``
    on top of every other paramwise rule (``custom_keys``, ``decay_mult`` ...). ``rate=1`` (the
    default) leaves learning rates as the default constructor sets them.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = float(paramwise_cfg.pop('layer_decay_rate', 1.0))
        if not 0 < self.layer_decay_rate <= 1:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {self.layer_decay_rate}')
        paramwise_cfg.setdefault('custom_keys', {})  # one group per parameter
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        if self.layer_decay_rate == 1:
            return wrapper
        inner = getattr(model, 'module', model)
        depths = tuple(inner.backbone.depths)
        top = sum(depths) + 1
        names = {id(p): n for n, p in inner.named_parameters()}
        for group in wrapper.optimizer.param_groups:
            ids = {layer_id(names[id(p)], depths) for p in group['params']}
            if len(ids) != 1:
                raise ValueError('layer decay needs one parameter group per layer')
            group['lr'] *= self.layer_decay_rate ** (top - ids.pop())
        return wrapper
