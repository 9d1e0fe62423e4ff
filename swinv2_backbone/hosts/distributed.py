"""Sharded training through mmengine's ``FlexibleRunner`` strategies (FSDP, DDP).

A config names the policy by its registered name, never a module path::

    runner_type = 'FlexibleRunner'
    strategy = dict(type='SwinV2FSDPStrategy', model_wrapper=dict(
        auto_wrap_policy=dict(type='swinv2_wrap_policy'), use_orig_params=True))

``use_orig_params`` keeps one optimizer parameter per model parameter, so the SwinV2 recipe's
paramwise rules (no decay on CPB MLPs, temperatures, q/v biases; layer-wise lr decay) apply
under FSDP as under DDP. Activation checkpointing is the backbone's own ``with_cp``.
"""
from __future__ import annotations

import os.path as osp

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.dist import get_rank
from mmengine.registry import FUNCTIONS, STRATEGIES
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from ..model.blocks import SwinV2Block

__all__ = ['SwinV2FSDPStrategy', 'swinv2_wrap_policy']


def swinv2_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0) -> bool:
    """FSDP's ``auto_wrap_policy``: each :class:`SwinV2Block` is one FSDP unit (its weights are
    gathered for its forward and backward only); the rest (stem, patch merging, neck, heads)
    belongs to the root unit."""
    return recurse or isinstance(module, SwinV2Block)


# force: re-importing the package (a notebook's reload) must not raise
FUNCTIONS.register_module('swinv2_wrap_policy', module=swinv2_wrap_policy, force=True)


@STRATEGIES.register_module(force=True)
class SwinV2FSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` with resuming fixed: mmengine 0.10.7 passes
    ``FSDP.optim_state_dict_to_load`` its arguments in torch 2.0's order, which torch >= 2.1
    changed (resuming fails with "TypeError: unhashable type: 'dict'"; pytorch#105727); and
    per-rank shards (``state_dict_cfg='local'``) load again under torch >= 2.6, whose
    weights-only ``torch.load`` refuses the ``ShardedTensor`` they hold. It also logs how many
    FSDP units the wrap policy made."""

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        model = super()._wrap_model(model)
        units = sum(isinstance(m, FSDP) for m in model.modules())
        self.logger.info(f'FSDP: {units} units over {self.world_size} processes')
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
