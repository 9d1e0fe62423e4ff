"""The SwinV2 fine-tuning recipe: no weight decay on SwinV2-specific parameters; layer decay."""
from __future__ import annotations

import pytest
from mmengine.optim import build_optim_wrapper
from torch import nn

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.hosts.optim import layer_id

DEPTHS = (1, 2, 1, 2)
NO_DECAY = ('norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed')


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = SwinV2Backbone(arch=dict(embed_dim=16, depths=DEPTHS,
                                                 num_heads=(1, 1, 1, 1)))
        self.neck = nn.Linear(4, 4)


def build(rate, backbone_lr_mult=1.0):
    model = Detector()
    wrapper = build_optim_wrapper(model, dict(
        constructor='SwinV2LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=rate, backbone_lr_mult=backbone_lr_mult,
                           custom_keys={k: dict(decay_mult=0.0) for k in NO_DECAY})))
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g for g in wrapper.optimizer.param_groups}


def test_layer_ids_follow_depth():
    assert layer_id('backbone.patch_embed.proj.weight', DEPTHS) == 0
    assert layer_id('backbone.stages.0.blocks.0.attn.qkv.weight', DEPTHS) == 1
    assert layer_id('backbone.stages.1.downsample.reduction.weight', DEPTHS) == 2
    assert layer_id('backbone.stages.1.blocks.1.mlp.fc1.weight', DEPTHS) == 3
    assert layer_id('backbone.stages.3.blocks.1.norm2.bias', DEPTHS) == 6
    assert layer_id('backbone.out_norms.stage4.weight', DEPTHS) == 7
    assert layer_id('neck.weight', DEPTHS) == 7


def test_layer_decay_scales_lr_by_depth_and_keeps_decay_rules():
    groups = build(0.5)
    assert groups['neck.weight']['lr'] == 1.0
    assert groups['backbone.stages.3.blocks.1.mlp.fc2.weight']['lr'] == 0.5
    assert groups['backbone.stages.0.blocks.0.attn.qkv.weight']['lr'] == 0.5 ** 6
    assert groups['backbone.patch_embed.proj.weight']['lr'] == 0.5 ** 7
    for name, group in groups.items():
        wd = 0.0 if any(k in name for k in NO_DECAY) else 0.05
        assert group['weight_decay'] == wd, name


def test_rate_one_leaves_learning_rates_alone():
    assert {g['lr'] for g in build(1.0).values()} == {1.0}


def test_backbone_lr_mult_scales_the_backbone_only_and_keeps_decay_rules():
    groups = build(0.5, backbone_lr_mult=0.1)
    assert groups['neck.weight']['lr'] == 1.0
    assert groups['backbone.stages.3.blocks.1.mlp.fc2.weight']['lr'] == pytest.approx(0.05)
    assert groups['backbone.stages.0.blocks.0.attn.cpb_mlp.0.weight']['lr'] == \
        pytest.approx(0.1 * 0.5 ** 6)
    for name, group in groups.items():
        wd = 0.0 if any(k in name for k in NO_DECAY) else 0.05
        assert group['weight_decay'] == wd, name


def test_bad_rate_is_refused():
    with pytest.raises(ValueError, match='layer_decay_rate must be in'):
        build(1.5)
    with pytest.raises(ValueError, match='backbone_lr_mult must be in'):
        build(1.0, backbone_lr_mult=0.0)
