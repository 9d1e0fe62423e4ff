"""Every config in configs/ builds its model in its host library and runs a forward pass."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from swinv2_backbone.runner import adapt_to_cpu, check_channels, host_of, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def test_configs_exist_for_both_hosts():
    names = [p.name for p in CONFIGS]
    for expected in ('mask-rcnn_swinv2-b-w16_fpn_ms-crop-3x_coco.py',
                     'cascade-mask-rcnn_swinv2-b-w24_fpn_ms-3x_coco.py',
                     'retinanet_swinv2-t-w16_fpn_1x_coco.py',
                     'upernet_swinv2-l-w24_8xb2-160k_ade20k-640x640.py'):
        assert expected in names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_predicts(path):
    header = path.read_text().split('\n_base_')[0]
    assert header.startswith('#') and 'Changes from' in header
    assert 'Weights:' in header or 'No pretrained weights' in header
    cfg = load_config(path)
    host = host_of(cfg)
    backbone = cfg.model.backbone
    assert backbone.type == 'SwinV2Backbone'
    assert cfg.custom_imports['imports'] == ['swinv2_backbone']
    check_channels(cfg)
    if 'demo' not in path.parts:  # the SwinV2 fine-tuning recipe
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.constructor == 'SwinV2LayerDecayOptimWrapperConstructor'
        keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
        assert {k for k, v in keys.items() if v == dict(decay_mult=0.0)} == {
            'norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed'}
    adapt_to_cpu(cfg)
    init_default_scope(host)
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    if host == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                             scale_factor=(1.0, 1.0)))
    else:
        from mmseg.registry import MODELS
        from mmseg.structures import SegDataSample
        assert cfg.model.get('pretrained') is None
        sample = SegDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128)))
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        (result,) = model.test_step(dict(inputs=[img], data_samples=[sample]))
    if host == 'mmdet':
        assert result.pred_instances.bboxes.shape[-1] == 4
    else:
        assert result.pred_sem_seg.data.shape == (1, 96, 128)
