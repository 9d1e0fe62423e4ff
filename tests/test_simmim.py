"""SimMIM pretraining through mmpretrain's ``SimMIM`` (configs/mmpretrain/): the backbone's mask
token, the configs, a few iterations on the shapes images whose loss falls, and the checkpoint
fine-tuning a detector through ``init_cfg``."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from devkit.synthetic import make_shapes_dataset
from mmengine.config import Config

from swinv2_backbone import SwinV2Backbone, load_pretrained

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / 'configs' / 'mmpretrain'
NANO = dict(arch=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16)),
            window_size=4, drop_path_rate=0.0)


def test_masked_patches_become_the_mask_token():
    model = SwinV2Backbone(**NANO, out_features=('stem',), out_norm=False, mask_token=True)
    model.init_weights()
    x = torch.randn(2, 3, 30, 42)  # 8 x 11 patches
    mask = torch.zeros(2, 8, 11)
    mask[0, 2:5, 3:9] = 1
    with torch.no_grad():
        (plain,) = model(x)
        (masked,) = model(x, mask)
    token = model.mask_token.reshape(-1)
    assert torch.equal(masked[0, :, 2:5, 3:9], token[:, None, None].expand(-1, 3, 6))
    keep = mask[:, None].expand_as(plain) == 0
    assert torch.equal(masked[keep], plain[keep])
    with torch.no_grad():
        assert torch.equal(model(x, torch.zeros(2, 8, 11))[0], plain)


def test_mask_errors_name_the_problem():
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match='a mask needs a mask token: build with mask_token=True'):
        SwinV2Backbone(**NANO)(x, torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r'mask must be a \(B, H/patch, W/patch\) = \(1, 8, 8\) '
                                         r'tensor for input \(1, 3, 32, 32\), got \(1, 4, 4\)'):
        SwinV2Backbone(**NANO, mask_token=True)(x, torch.zeros(1, 4, 4))


@pytest.mark.parametrize('name', ['simmim_swinv2-t-w12_8xb256-amp-coslr-100e_in1k-192px.py',
                                  'simmim_swinv2-b-w12_16xb128-amp-coslr-800e_in1k-192px.py'])
def test_imagenet_configs_build_mmpretrains_simmim(name):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from swinv2_backbone.hosts.runner import check_channels, host_of, load_config
    cfg = load_config(CONFIGS / name)
    header = (CONFIGS / name).read_text().split('\n_base_')[0]
    assert 'Changes from' in header and 'No pretrained weights' in header
    assert host_of(cfg) == 'mmpretrain' and cfg.model.backbone.mask_token
    check_channels(cfg)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'SimMIM' and type(model.backbone) is SwinV2Backbone
    assert model.backbone.out_channels == (cfg.model.neck.in_channels,)


def _losses(log: str) -> list[float]:
    return [float(v) for v in re.findall(r'Iter\(train\) \[ *\d+/\d+\].*? loss: ([\d.]+)', log)]


def test_pretrains_on_shapes_and_the_checkpoint_fine_tunes_a_detector(tmp_path):
    data = make_shapes_dataset(tmp_path / 'data', num_train=32, num_val=1, size=128)
    work = tmp_path / 'work'
    options = {'train_dataloader.dataset.data_root': str(data / 'coco'),
               'train_dataloader.num_workers': 0, 'train_cfg.max_iters': 40,
               'default_hooks.logger.interval': 5, 'default_hooks.checkpoint.interval': 40}
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'),
         str(CONFIGS / 'simmim_swinv2-nano_shapes.py'), '--work-dir', str(work),
         '--cfg-options', *(f'{k}={v}' for k, v in options.items())],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = _losses(proc.stdout + proc.stderr)
    print('SimMIM loss every 5 iterations:', losses)  # pytest -rP shows the curve
    assert len(losses) >= 8  # every 5 iterations of 40
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2, losses
    checkpoint = work / 'iter_40.pth'
    assert checkpoint.exists()

    # a detector built from the demo config, its backbone's init_cfg naming the checkpoint,
    # takes every backbone weight of the pretraining
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_shapes.py')
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    init_default_scope('mmdet')
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    model = detector.backbone
    report = load_pretrained(SwinV2Backbone(**{k: v for k, v in cfg.model.backbone.items()
                                               if k not in ('type', '_delete_', 'init_cfg')}),
                             str(checkpoint))
    assert report.format == 'ours'
    assert 'mask_token' in report.dropped and any(k.startswith('neck.') for k in report.dropped)
    assert all(k.startswith('out_norms.stage') for k in report.missing), report.missing
    assert not report.unexpected
    saved = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    learned = {k: v for k, v in model.state_dict().items() if not k.startswith('out_norms.')
               and 'relative' not in k}
    assert learned and all(torch.equal(v, saved[f'backbone.{k}']) for k, v in learned.items())
