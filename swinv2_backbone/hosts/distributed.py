"""Sharded training through mmengine's ``FlexibleRunner`` strategies (FSDP, DDP).

A config names the policy by its registered name, never a module path::

    runner_type = 'FlexibleRunner'
    strategy = dict(type='SwinV2FSDPStrategy', model_wrapper=dict(
        auto_wrap_policy=dict(type='swinv2_wrap_policy', mixed_precision=dict(
            param_dtype='bfloat16', reduce_dtype='float32', buffer_dtype='float32')),
        use_orig_params=True))

Mixed precision is given to the wrap policy, not to the root: the backbone (where the memory
goes) runs in bf16 while the neck and heads stay float32, since their ops need it (mmcv's NMS
and RoIAlign take float and half only; losses want float32).

``use_orig_params`` keeps one optimizer parameter per model parameter, so the SwinV2 recipe's
paramwise rules (no decay on CPB MLPs, temperatures, q/v biases; layer-wise lr decay) apply
under FSDP as under DDP. Activation checkpointing is the backbone's own ``with_cp``.
"""
from __future__ import annotations

import dataclasses
import os.path as osp
from collections import Counter
from typing import Any

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.dist import get_rank
from mmengine.registry import FUNCTIONS, STRATEGIES
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import MixedPrecision
from torch.distributed.fsdp.wrap import CustomPolicy

from ..model.backbone import SwinV2Backbone
from ..model.blocks import SwinV2Block

__all__ = ['SwinV2FSDPStrategy', 'SwinV2WrapPolicy', 'swinv2_wrap_policy']

POLICY_NAME = 'swinv2_wrap_policy'


def _is_unit(module: nn.Module) -> bool:
    """The FSDP units: the backbone (stem, patch merging, norms) and each of its blocks."""
    return isinstance(module, (SwinV2Backbone, SwinV2Block))


def swinv2_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0,
                       mixed_precision: Any = None) -> bool:
    """FSDP's ``auto_wrap_policy``: the backbone and each :class:`SwinV2Block` are FSDP units
    (a unit's weights are gathered for its forward and backward only); the neck and heads
    belong to the root unit. ``mixed_precision`` for the backbone's units alone needs
    :class:`SwinV2FSDPStrategy`, which builds a :class:`SwinV2WrapPolicy` from it."""
    if mixed_precision is not None:
        raise ValueError(
            f"auto_wrap_policy=dict(type='{POLICY_NAME}', mixed_precision=...) runs the "
            "backbone in mixed precision only under strategy=dict(type='SwinV2FSDPStrategy'), "
            "which casts its outputs back for the neck and heads; mmengine's FSDPStrategy "
            'cannot: name SwinV2FSDPStrategy, or give mixed_precision to model_wrapper itself')
    return recurse or _is_unit(module)


# force: re-importing the package (a notebook's reload) must not raise
FUNCTIONS.register_module(POLICY_NAME, module=swinv2_wrap_policy, force=True)


def _mixed_precision(cfg: dict | MixedPrecision | None) -> MixedPrecision | None:
    """A ``MixedPrecision`` from a config dict whose dtypes may be names ('bfloat16')."""
    if cfg is None or isinstance(cfg, MixedPrecision):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f'mixed_precision must be a dict, a MixedPrecision or None, got {cfg!r}')
    return MixedPrecision(**{k: getattr(torch, v) if isinstance(v, str) else v
                             for k, v in cfg.items()})


class SwinV2WrapPolicy(CustomPolicy):
    """The units of :func:`swinv2_wrap_policy`, with ``mixed_precision`` applied to them alone.

    The backbone's unit casts its floating inputs to ``param_dtype`` (the blocks receive them
    already cast); the root (neck, heads, losses) keeps the root's precision, float32 unless
    ``model_wrapper.mixed_precision`` says otherwise. :class:`SwinV2FSDPStrategy` casts the
    backbone's outputs back to its input's dtype.

    Args:
        mixed_precision: FSDP's ``MixedPrecision`` or its config dict, e.g.
            ``dict(param_dtype='bfloat16', reduce_dtype='float32', buffer_dtype='float32')``;
            None: the units take the root's.
    """

    def __init__(self, mixed_precision: dict | MixedPrecision | None = None):
        precision = _mixed_precision(mixed_precision)
        # True: a unit with the root's kwargs; a dict overrides them for that unit
        self.backbone_kwargs: bool | dict = True
        self.block_kwargs: bool | dict = True
        if precision is not None:
            self.backbone_kwargs = dict(mixed_precision=dataclasses.replace(
                precision, cast_forward_inputs=True))
            self.block_kwargs = dict(mixed_precision=dataclasses.replace(
                precision, cast_forward_inputs=False))
        super().__init__(self._unit_kwargs)

    def _unit_kwargs(self, module: nn.Module) -> bool | dict:
        if isinstance(module, SwinV2Backbone):
            return self.backbone_kwargs
        return self.block_kwargs if isinstance(module, SwinV2Block) else False

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int = 0) -> bool:
        """The same units in the older callable form (mmengine checks a policy is callable;
        FSDP itself runs :meth:`_run_policy`)."""
        return swinv2_wrap_policy(module, recurse, nonwrapped_numel)


def _policy_from_config(policy: Any) -> Any:
    """``swinv2_wrap_policy`` named in a config (str or dict) -> a :class:`SwinV2WrapPolicy`;
    any other policy is returned as it is."""
    if policy == POLICY_NAME:
        return SwinV2WrapPolicy()
    if isinstance(policy, dict) and policy.get('type') in (POLICY_NAME, swinv2_wrap_policy):
        kwargs = {k: v for k, v in policy.items() if k != 'type'}
        return SwinV2WrapPolicy(**kwargs)
    return policy


def _outputs_in_input_dtype(module: nn.Module, args: tuple, output: Any) -> Any:
    """Forward hook of the backbone's unit: its outputs in the dtype of its floating input
    (the neck's float32), whatever the dtype its blocks ran in."""
    dtype = next((a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()), None)
    if dtype is None or not isinstance(output, (tuple, list)):
        return output
    return type(output)(o.to(dtype) if torch.is_tensor(o) and o.is_floating_point() else o
                        for o in output)


@STRATEGIES.register_module(force=True)
class SwinV2FSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` with resuming fixed: mmengine 0.10.7 passes
    ``FSDP.optim_state_dict_to_load`` its arguments in torch 2.0's order, which torch >= 2.1
    changed (resuming fails with "TypeError: unhashable type: 'dict'"; pytorch#105727); and
    per-rank shards (``state_dict_cfg='local'``) load again under torch >= 2.6, whose
    weights-only ``torch.load`` refuses the ``ShardedTensor`` they hold. ``swinv2_wrap_policy``
    becomes a :class:`SwinV2WrapPolicy` (mixed precision for the backbone's units alone), whose
    outputs are cast back to float32 for the neck and heads. It logs how many FSDP units the
    wrap policy made."""

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if self.model_wrapper is not None and 'auto_wrap_policy' in self.model_wrapper:
            self.model_wrapper = dict(self.model_wrapper, auto_wrap_policy=_policy_from_config(
                self.model_wrapper['auto_wrap_policy']))
        model = super()._wrap_model(model)
        units = [m for m in model.modules() if isinstance(m, FSDP)]
        for unit in units:
            if isinstance(unit.module, SwinV2Backbone):
                unit.register_forward_hook(_outputs_in_input_dtype)
        # 'bfloat16 x9, root float32': the precision each unit computes in
        dtypes = Counter(str(u.mixed_precision.param_dtype or torch.float32).split('.')[-1]
                         for u in units[1:])
        root = str(units[0].mixed_precision.param_dtype or torch.float32).split('.')[-1]
        self.logger.info(f'FSDP: {len(units)} units over {self.world_size} processes ('
                         + ', '.join(f'{d} x{n}' for d, n in dtypes.items())
                         + f', root {root})')
        return model

    def load_checkpoint(self, filename: str, *, map_location='cpu', strict: bool = False,
                        callback=None, **kwargs) -> dict:
        if self._is_full_state_dict():
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           callback=callback, **kwargs)
        shard = osp.join(filename, f'rank{get_rank()}.pth')
        self.logger.info(f'Load checkpoint from {shard}')
        # a shard this strategy wrote; its ShardedTensors unpickle only without weights_only
        checkpoint = torch.load(shard, map_location='cpu', weights_only=False)
        if callback is not None:
            callback(checkpoint)
        self.load_model_state_dict(checkpoint.pop('state_dict'), strict=strict)
        return checkpoint

    def load_optim_state_dict(self, state_dict: dict) -> None:
        optimizer = self.optim_wrapper.optimizer
        self.optim_wrapper.load_state_dict(FSDP.optim_state_dict_to_load(
            model=self.model, optim=optimizer, optim_state_dict=state_dict))
