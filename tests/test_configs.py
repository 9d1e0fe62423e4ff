"""Every config in configs/ builds its model in its host library and runs a forward pass."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from swinv2_backbone.hosts.runner import adapt_to_cpu, check_channels, host_of, load_config

ROOT = Path(__file__).resolve().parent.parent
# detection and segmentation configs: configs/deploy/ holds mmdeploy's (tests/test_deploy.py),
# configs/mmpretrain/ SimMIM pretraining (tests/test_simmim.py)
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if not {'_base_', 'deploy', 'mmpretrain'} & set(p.relative_to(ROOT).parts))


def test_configs_exist_for_both_hosts():
    names = [p.name for p in CONFIGS]
    for expected in ('mask-rcnn_swinv2-b-w16_fpn_ms-crop-3x_coco.py',
                     'cascade-mask-rcnn_swinv2-b-w24_fpn_ms-3x_coco.py',
                     'retinanet_swinv2-t-w16_fpn_1x_coco.py',
                     'upernet_swinv2-l-w24_8xb2-160k_ade20k-640x640.py',
                     'dino-5scale_swinv2-l-w24_8xb2-36e_coco.py',
                     'mask2former_swinv2-b-w16_8xb2-lsj-50e_coco.py',
                     'mask2former_swinv2-b-w16_8xb2-lsj-50e_coco-panoptic.py',
                     'htc_swinv2-l-w24_fpn_ms-400-1400-16xb1-20e_coco.py',
                     'mask2former_swinv2-l-w24_8xb2-160k_ade20k-640x640.py',
                     'htc_swinv2-g-w32_fpn_fsdp-ms-400-1536-16xb1-20e_coco.py',
                     'upernet_swinv2-g-w40_fsdp-8xb2-160k_ade20k-640x640.py'):
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
    assert 'swinv2_backbone' in cfg.custom_imports['imports']
    check_channels(cfg)
    if 'demo' not in path.parts:  # the SwinV2 fine-tuning recipe
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.constructor == 'SwinV2LayerDecayOptimWrapperConstructor'
        keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
        assert {k for k, v in keys.items() if v == dict(decay_mult=0.0)} == {
            'norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed'}
        if path.name.startswith(('dino', 'mask2former')):  # the hosts' query-head recipe
            assert cfg.optim_wrapper.paramwise_cfg.backbone_lr_mult == 0.1
            assert 'backbone' not in keys  # it would hide the no-decay keys above
        if path.name.startswith('mask2former'):
            assert keys['query_embed'] == dict(lr_mult=1.0, decay_mult=0.0)
    adapt_to_cpu(cfg)
    init_default_scope(host)
    H, W = 97, 131  # odd: the backbone pads, the heads must still get their strides
    img = torch.randint(0, 255, (3, H, W), dtype=torch.uint8)
    if host == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W),
                                             scale_factor=(1.0, 1.0)))
    else:
        from mmseg.registry import MODELS
        from mmseg.structures import SegDataSample
        assert cfg.model.get('pretrained') is None
        sample = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W)))
    if 'swinv2-g' in path.name:  # 3 billion parameters: built without allocating them
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        assert 2.9e9 < sum(p.numel() for p in model.backbone.parameters()) < 3.1e9
        return
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        (result,) = model.test_step(dict(inputs=[img], data_samples=[sample]))
    if host == 'mmdet':
        assert result.pred_instances.bboxes.shape[-1] == 4
        if path.name.endswith('panoptic.py'):
            assert result.pred_panoptic_seg.sem_seg.shape == (1, H, W)
    else:
        assert result.pred_sem_seg.data.shape == (1, H, W)


@pytest.mark.parametrize('name,head,wrong', [
    ('mmdet/mask2former_swinv2-t-w16_8xb2-lsj-50e_coco-panoptic.py', 'panoptic_head',
     [96, 192, 384, 1024]),
    ('mmseg/mask2former_swinv2-t-w16_8xb2-160k_ade20k-512x512.py', 'decode_head',
     [96, 192, 384, 1024]),
    ('mmdet/dino-5scale_swinv2-t-w16_8xb2-12e_coco.py', 'neck', [96, 192, 384, 1024]),
])
def test_preflight_names_a_query_head_whose_channels_miss_the_backbone(name, head, wrong):
    cfg = load_config(ROOT / 'configs' / name)
    check_channels(cfg)
    cfg.model[head].in_channels = wrong
    with pytest.raises(ValueError, match=rf'model\.{head}\.in_channels is \[96, 192, 384, '
                                         r'1024\] but the SwinV2 backbone .* gives '
                                         r'\[96, 192, 384, 768\]'):
        check_channels(cfg)


def test_each_backbone_dict_is_written_once_in_its_model_fragment():
    """The backbone of each arch and window (type, arch, window, pretrained windows, weights)
    lives in configs/_base_/models/; task configs take it from there and add what differs."""
    fragments = ROOT / 'configs' / '_base_' / 'models'
    for path in sorted((ROOT / 'configs').rglob('*.py')):
        text = path.read_text()
        if path.parent == fragments:
            assert text.count("type='SwinV2Backbone'") == 1, path.name
        else:
            assert "type='SwinV2Backbone'" not in text, path.relative_to(ROOT)
            code = '\n'.join(line for line in text.splitlines() if not line.startswith('#'))
            assert 'SwinTransformer/storage' not in code, path.relative_to(ROOT)
