"""Optimizer construction for SwinV2 fine-tuning: optional layer-wise learning-rate decay and a
learning-rate multiplier for the whole backbone."""
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
    """mmengine's default constructor plus two ``paramwise_cfg`` entries, applied on top of every
    other paramwise rule (``custom_keys``, ``decay_mult`` ...):

    - ``layer_decay_rate``: a parameter at :func:`layer_id` ``i`` of ``L = sum(depths) + 1``
      gets ``lr * rate**(L - i)``;
    - ``backbone_lr_mult``: every backbone parameter's lr times this (the query-based heads'
      recipes train the backbone at 0.1x). A ``custom_keys`` entry ``'backbone'`` would do the
      same but, being the longest matching key, hide the no-decay keys of the backbone's
      position-bias MLPs, temperatures and q/v biases; this multiplier composes with them.

    Both default to 1: learning rates as the default constructor sets them.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.layer_decay_rate = float(paramwise_cfg.pop('layer_decay_rate', 1.0))
        self.backbone_lr_mult = float(paramwise_cfg.pop('backbone_lr_mult', 1.0))
        for key in ('layer_decay_rate', 'backbone_lr_mult'):
            if not 0 < getattr(self, key) <= 1:
                raise ValueError(f'{key} must be in (0, 1], got {getattr(self, key)}')
        paramwise_cfg.setdefault('custom_keys', {})  # one group per parameter
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        if self.layer_decay_rate == 1 and self.backbone_lr_mult == 1:
            return wrapper
        inner = getattr(model, 'module', model)
        depths = tuple(inner.backbone.depths)
        top = sum(depths) + 1
        names = {id(p): n for n, p in inner.named_parameters()}
        for group in wrapper.optimizer.param_groups:
            group_names = [names[id(p)] for p in group['params']]
            ids = {layer_id(n, depths) for n in group_names}
            in_backbone = {n.startswith('backbone.') for n in group_names}
            if len(ids) != 1 or len(in_backbone) != 1:
                raise ValueError('layer_decay_rate and backbone_lr_mult need one parameter '
                                 'group per parameter (paramwise_cfg with custom_keys)')
            group['lr'] *= self.layer_decay_rate ** (top - ids.pop())
            if in_backbone.pop():
                group['lr'] *= self.backbone_lr_mult
        return wrapper
