"""FSDP through mmengine's FlexibleRunner, with the real runners, datasets and metrics, on 2 gloo
processes: a detector and a segmenter train with the losses DDP gives from the same weights (in
float32 to rounding; in the shipped bf16 within a stated bound); every shipped FSDP config
(the demos as they are, the COCO and ADE20K ones with a tiny arch and image size) trains in its
shipped precision, checkpoints and resumes; the demo checkpoints (whole or sharded) are
evaluated. And the model parts FSDP's mixed precision relies on (bf16 weights, float32 buffers,
no autocast) on every execution path, in both environments."""
from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from devkit.testing import randomize_
from devkit.synthetic import make_shapes_dataset
from test_tools import DEMO, ROOT, options, run

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.compat import TORCH_VERSION
from devkit.activations import FAKE_CUDA, NO_FAKE_CUDA
from swinv2_backbone.hosts.runner import build_model, build_runner, load_config

# measured: torch 2.14.1's FSDP runs on the CPU with gloo; torch 2.1.2's does not (its stream
# set-up calls torch.cpu.Stream(priority=...): "TypeError: Stream() takes no arguments")
needs_cpu_fsdp = pytest.mark.skipif(TORCH_VERSION < (2, 14),
                                    reason='torch < 2.14: FSDP untested or not running on CPU')
FAMILIES = {'mmdet': 'mask-rcnn_swinv2-nano_shapes', 'mmseg': 'upernet_swinv2-nano_shapes'}
# the demos' backbone and each of its blocks (2+2+2+2) in bf16, the root (neck, heads) float32
UNITS = 'FSDP: 10 units over 2 processes (bfloat16 x9, root float32)'
UNITS_FLOAT32 = 'FSDP: 10 units over 2 processes (float32 x9, root float32)'
# the same weights and data: FSDP's reduce-scatter and DDP's all-reduce of 2 ranks' float32
# gradients agree to rounding, and did to every printed digit when measured
LOSS_RTOL = 1e-5
# the backbone in bf16 (neck, heads float32) against DDP in float32, the first 3 iterations:
# measured at most 1.6e-3 relative (Mask R-CNN, whose proposals NMS picks from bf16 features)
# and 8e-5 (UperNet); the bound leaves a factor 6 for other CPUs' bf16 kernels
BF16_LOSS_RTOL = 1e-2


def test_bf16_weights_with_float32_buffers_run_every_path():
    """FSDP's mixed precision casts parameters to bf16 and keeps buffers (the CPB table, the
    zero k bias) float32, without autocast: every path runs in bf16 and agrees with the float32
    model to bf16 rounding (the residual stream and norms in bf16 too: looser than autocast)."""
    def make():
        return SwinV2Backbone(arch=dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4)),
                              window_size=4, drop_path_rate=0.0)

    model, half = randomize_(make()), make()
    x = torch.randn(2, 3, 40, 37)
    half.load_state_dict(model.state_dict())
    for p in half.parameters():
        p.data = p.data.bfloat16()
    assert half.stages[0].blocks[0].attn.relative_coords_table.dtype == torch.float32
    for training in (True, False):
        model.train(training)
        half.train(training)
        with torch.no_grad():
            ref = model(x)
        for execution in ('reference', 'batched', 'cpu'):
            half.execution = execution
            with torch.set_grad_enabled(training):
                outs = half(x.bfloat16())
            assert [o.dtype for o in outs] == [torch.bfloat16] * 2, (training, execution)
            for o, r in zip(outs, ref):  # measured: max 0.07-0.13, rms 0.011-0.016
                err = (o.float() - r).abs() / r.std()
                assert err.max().item() < 0.2 and err.pow(2).mean().sqrt().item() < 0.025, \
                    (training, execution, err.max().item())


def test_the_wrap_policy_gives_mixed_precision_to_the_backbone_units_alone():
    """The units torch's FSDP makes from the policy (its ``_run_policy``, before any process
    group): the backbone casts its inputs, its blocks take them cast, the neck and heads are
    the root's; the backbone's outputs come back in its input's dtype."""
    from torch.distributed.fsdp import MixedPrecision

    from swinv2_backbone import SwinV2WrapPolicy
    from swinv2_backbone.hosts.distributed import _outputs_in_input_dtype, _policy_from_config
    detector = build_model(load_config(DEMO / 'mask-rcnn_swinv2-nano_shapes_fsdp.py'))
    policy = _policy_from_config(load_config(
        DEMO / 'mask-rcnn_swinv2-nano_shapes_fsdp.py').strategy.model_wrapper.auto_wrap_policy)
    assert isinstance(policy, SwinV2WrapPolicy)
    units = policy._run_policy(detector, set(), dict(mixed_precision=None))
    blocks = [b for stage in detector.backbone.stages for b in stage.blocks]
    assert list(units) == [detector.backbone, *blocks]
    precisions = [kwargs['mixed_precision'] for kwargs in units.values()]
    assert all(p.param_dtype == torch.bfloat16 and p.reduce_dtype == torch.float32
               and p.buffer_dtype == torch.float32 for p in precisions)
    assert [p.cast_forward_inputs for p in precisions] == [True] + [False] * len(blocks)
    # without mixed precision: the same units with the root's kwargs
    plain = SwinV2WrapPolicy()._run_policy(detector, set(), dict(mixed_precision=None))
    assert list(plain) == list(units) and all(k['mixed_precision'] is None
                                              for k in plain.values())
    assert SwinV2WrapPolicy(MixedPrecision(param_dtype=torch.float16)).backbone_kwargs[
        'mixed_precision'].param_dtype == torch.float16
    x = torch.randn(1, 3, 8, 8)
    outs = _outputs_in_input_dtype(None, (x,), (x.bfloat16(), x.bfloat16()))
    assert [o.dtype for o in outs] == [torch.float32] * 2


def test_per_unit_mixed_precision_under_mmengines_strategy_is_refused_with_the_fix():
    """mmengine's FSDPStrategy would run the backbone's policy without the cast back."""
    from functools import partial

    from swinv2_backbone import SwinV2WrapPolicy, swinv2_wrap_policy
    policy = partial(swinv2_wrap_policy, mixed_precision=dict(param_dtype='bfloat16'))
    with pytest.raises(ValueError, match="only under strategy=dict.type='SwinV2FSDPStrategy'"):
        policy(module=torch.nn.Linear(1, 1), recurse=False, nonwrapped_numel=2)
    with pytest.raises(TypeError, match='mixed_precision must be a dict'):
        SwinV2WrapPolicy('bfloat16')


def test_evaluating_sharded_checkpoints_in_one_process_is_refused_with_the_fix(tmp_path):
    shards = tmp_path / 'iter_4.pth'
    shards.mkdir()
    with pytest.raises(ValueError, match='folder of per-rank shards.*dist_test.sh'):
        build_runner(DEMO / 'upernet_swinv2-nano_shapes_fsdp.py', mode='test',
                     checkpoint=str(shards), work_dir=str(tmp_path / 'w'))


def test_a_sharding_strategy_without_a_launcher_says_how_to_start(tmp_path):
    with pytest.raises(ValueError, match='dist_train.sh CONFIG NPROC'):
        build_runner(DEMO / 'upernet_swinv2-nano_shapes_fsdp.py', work_dir=str(tmp_path))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp('shapes'), num_train=8, num_val=4,
                               size=64)


def losses(work) -> dict[int, float]:
    """Rank 0's loss per iteration, from the runs' scalars logs (a resumed run's too)."""
    rows = [json.loads(line) for log in sorted(work.glob('*/vis_data/scalars.json'))
            for line in log.read_text().splitlines()]
    return {row['iter']: row['loss'] for row in rows if 'loss' in row}


def dist_train(config, work, data, host, iters, *flags, raw=False, **extra):
    """tools/dist_train.sh on 2 processes; ``raw``: ``flags`` are all the options."""
    code, out = run('bash', str(ROOT / 'tools' / 'dist_train.sh'), str(config), '2',
                    '--work-dir', str(work), *flags,
                    *([] if raw else options(data, host, iters, **extra)))
    assert code == 0, out[-3000:]
    return out


@needs_cpu_fsdp
@pytest.mark.parametrize('host', FAMILIES)
def test_fsdp_trains_with_the_losses_of_ddp(tmp_path, data, host):
    """In float32 FSDP's losses are DDP's to rounding; in the shipped precision (the backbone
    in bf16, neck and heads float32) within BF16_LOSS_RTOL of DDP's float32 ones."""
    name = FAMILIES[host]
    init = tmp_path / 'init.pth'  # all runs start from these weights
    torch.manual_seed(0)
    model = build_model(load_config(DEMO / f'{name}.py'))
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, init)
    dist_train(DEMO / f'{name}.py', tmp_path / 'ddp', data, host, 3,
               **{'model.backbone.with_cp': True, 'load_from': init})
    fsdp = dist_train(DEMO / f'{name}_fsdp.py', tmp_path / 'fsdp', data, host, 3,
                      **{'strategy.model_wrapper.auto_wrap_policy.mixed_precision': None,
                         'load_from': init})
    bf16 = dist_train(DEMO / f'{name}_fsdp.py', tmp_path / 'bf16', data, host, 3,
                      **{'load_from': init})
    # the config as run, which the log file holds (the console does not show it)
    (log,) = (tmp_path / 'ddp').glob('*/*.log')
    assert 'MMDistributedDataParallel' in log.read_text()
    assert UNITS_FLOAT32 in fsdp and UNITS in bf16
    want, got, half = losses(tmp_path / 'ddp'), losses(tmp_path / 'fsdp'), losses(tmp_path / 'bf16')
    assert sorted(want) == sorted(got) == sorted(half) == [1, 2, 3]
    assert all(abs(got[i] - want[i]) <= LOSS_RTOL * abs(want[i]) for i in want), (got, want)
    assert all(abs(half[i] - want[i]) <= BF16_LOSS_RTOL * abs(want[i]) for i in want), (half, want)
    assert half != got  # the backbone did run in bf16
    assert got[3] != got[1]  # it trained
    if host == 'mmseg':  # DDP through the FlexibleRunner's strategy too
        dist_train(DEMO / f'{name}.py', tmp_path / 'strategy', data, host, 3,
                   **{'model.backbone.with_cp': True, 'load_from': init,
                      'runner_type': 'FlexibleRunner', 'strategy.type': 'DDPStrategy'})
        assert losses(tmp_path / 'strategy') == want


# the COCO and ADE20K FSDP configs' models, with a tiny arch of their preset (SwinV2-G keeps its
# extra norm every 6 blocks: 7 blocks in stage 3 run one) and 64 px images on generated data
TINY_BACKBONE = dict(embed_dim=16, depths=(1, 1, 7, 1), num_heads=(1, 2, 4, 8), init_cfg=None)
TINY_OVERRIDES = {
    'mmdet': """
model = dict(backbone={backbone}, neck=dict(in_channels=[16, 32, 64, 128]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomResize', scale=[(96, 48), (96, 64)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
    indices=4, data_root='{data}/coco/', ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/', seg='stuffthingmaps/train/'),
    metainfo=dict(classes=('circle', 'square', 'triangle')), pipeline=train_pipeline))
""",
    'mmseg': """
crop_size = (64, 64)
model = dict(data_preprocessor=dict(size=crop_size), backbone={backbone},
             decode_head=dict(in_channels=[16, 32, 64, 128]), auxiliary_head=dict(in_channels=64))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root='{data}/ade/', pipeline=train_pipeline,
    data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
"""}
NO_EVALUATION = """
val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
default_hooks = dict(logger=dict(interval=1))
"""
FSDP_CONFIGS = {
    'mask-rcnn demo': (DEMO / 'mask-rcnn_swinv2-nano_shapes_fsdp.py', None),
    'htc L coco': (ROOT / 'configs/mmdet/htc_swinv2-l-w24_fpn_fsdp-ms-400-1400-16xb1-20e_coco.py',
                   'mmdet'),
    'htc G coco': (ROOT / 'configs/mmdet/htc_swinv2-g-w32_fpn_fsdp-ms-400-1536-16xb1-20e_coco.py',
                   'mmdet'),
    'upernet L ade': (ROOT / 'configs/mmseg/upernet_swinv2-l-w24_fsdp-8xb2-160k_ade20k-640x640.py',
                      'mmseg'),
    'upernet G ade': (ROOT / 'configs/mmseg/upernet_swinv2-g-w40_fsdp-8xb2-160k_ade20k-640x640.py',
                      'mmseg'),
}


@needs_cpu_fsdp
@pytest.mark.parametrize('name', FSDP_CONFIGS)
def test_each_fsdp_config_trains_in_its_shipped_precision_and_resumes(tmp_path, data, name):
    """The demo as shipped (the UperNet demo: the test below); the others with the tiny
    overrides above, their strategy, heads, optimizer and schedule as shipped. Resuming: the
    demo and each family's G config."""
    config, host = FSDP_CONFIGS[name]
    work = tmp_path / 'work'
    if host is None:  # the demo: 2 iterations, then 3
        first = dist_train(config, work, data, 'mmdet', 2)
        assert (work / 'iter_2.pth').exists()
        again = dist_train(config, work, data, 'mmdet', 3, '--resume')
        assert 'resumed epoch: 0, iter: 2' in again and 'Iter(train) [3/3]' in again
        blocks = 8
    else:
        tiny = tmp_path / 'tiny.py'
        tiny.write_text(f'_base_ = [{str(config)!r}]\n'
                        + TINY_OVERRIDES[host].format(backbone=TINY_BACKBONE, data=data)
                        + NO_EVALUATION)
        # the G configs inherit the L ones (model, strategy, schedule): they resume, the L ones
        # only train (CI time)
        resume, again = ' G ' in name, None
        if host == 'mmdet':  # epoch-based: 4 images, 2 ranks x 1 image, 2 iterations an epoch
            cmd = ['--cfg-options', 'train_cfg.max_epochs=1']
            first = dist_train(tiny, work, data, host, 0, *cmd, raw=True)
            assert (work / 'epoch_1.pth').exists()
            if resume:
                again = dist_train(tiny, work, data, host, 0, '--resume', '--cfg-options',
                                   'train_cfg.max_epochs=2', raw=True)
                assert 'resumed epoch: 1, iter: 2' in again and 'Epoch(train) [2][2/2]' in again
        else:  # iteration-based
            cmd = ['--cfg-options', 'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=1']
            first = dist_train(tiny, work, data, host, 0, *cmd, raw=True)
            assert (work / 'iter_2.pth').exists()
            if resume:
                again = dist_train(tiny, work, data, host, 0, '--resume', '--cfg-options',
                                   'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=1',
                                   raw=True)
                assert 'resumed epoch: 0, iter: 2' in again and 'Iter(train) [3/3]' in again
        blocks = sum(TINY_BACKBONE['depths'])
    for out in [o for o in (first, again) if o is not None]:
        assert f'FSDP: {blocks + 2} units over 2 processes (bfloat16 x{blocks + 1}, ' \
               'root float32)' in out
        assert 'rank 1/2: training finished' in out
    logged = losses(work)
    assert logged and all(math.isfinite(v) for v in logged.values()), logged


@needs_cpu_fsdp
@pytest.mark.parametrize('state', ['full', 'local'])
def test_fsdp_demo_trains_in_bf16_checkpoints_resumes_and_evaluates(tmp_path, data, state):
    """'full': rank 0 saves the whole model, which tools/test.py evaluates in one process;
    'local': each rank saves its shard, which tools/dist_test.sh evaluates in as many."""
    config = DEMO / 'upernet_swinv2-nano_shapes_fsdp.py'
    work = tmp_path / 'work'
    out = dist_train(config, work, data, 'mmseg', 2, **{'strategy.state_dict_cfg': state})
    assert 'Iter(train) [2/2]' in out and 'mIoU' in out
    for rank in (0, 1):
        assert f'rank {rank}/2: training finished at iteration 2' in out
    if state == 'full':  # the whole model, under the unwrapped model's names
        saved = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=False)
        state_dict = saved['state_dict']
        assert state_dict['backbone.stages.0.blocks.0.attn.qkv.weight'].dtype == torch.float32
        assert not any('_fsdp' in k for k in state_dict)
        assert saved['meta']['iter'] == 2
    else:  # ShardedTensors: they load only inside a process group
        assert sorted(p.name for p in (work / 'iter_2.pth').iterdir()) == \
            ['rank0.pth', 'rank1.pth']

    out = dist_train(config, work, data, 'mmseg', 3, '--resume',
                     **{'strategy.state_dict_cfg': state})
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out and 'Iter(train) [1/3]' not in out

    test = [str(config), str(work / 'iter_3.pth'), '--work-dir', str(tmp_path / 'test')]
    if state == 'full':
        code, out = run(sys.executable, str(ROOT / 'tools' / 'test.py'), *test,
                        *options(data, 'mmseg', 3))
        assert 'evaluating in one process' in out
    else:
        code, out = run('bash', str(ROOT / 'tools' / 'dist_test.sh'), *test[:2], '2',
                        *test[2:], *options(data, 'mmseg', 3,
                                            **{'strategy.state_dict_cfg': state}))
    assert code == 0, out[-3000:]
    assert any(line.startswith('{') and "'mIoU':" in line for line in out.splitlines()), out


def test_checkpointed_block_inputs_are_what_the_blocks_receive():
    """tools/estimate_memory.py adds, for with_cp, the input each checkpointed block holds: the
    formula's MiB equal the inputs the blocks get in a real forward at an odd size."""
    from devkit.memory import checkpointed_inputs_mib
    model = SwinV2Backbone(arch=dict(embed_dim=16, depths=(2, 1, 3), num_heads=(1, 2, 4)),
                           window_size=4, with_cp=True, drop_path_rate=0.0)
    seen = []
    for stage in model.stages:
        for blk in stage.blocks:
            blk.register_forward_pre_hook(lambda m, args: seen.append(args[0].nbytes))
    model(torch.randn(3, 3, 75, 61, requires_grad=True))
    assert len(seen) == 6
    assert checkpointed_inputs_mib(model, (75, 61), 3) == pytest.approx(sum(seen) / 2**20)


@pytest.mark.skipif(not FAKE_CUDA, reason=NO_FAKE_CUDA)
def test_memory_table_shards_states_and_with_cp_cuts_activations():
    code, out = run(sys.executable, str(ROOT / 'tools' / 'estimate_memory.py'), '--rows',
                    'quick', '--ranks', '4')
    assert code == 0, out[-3000:]
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if line.startswith('| SwinV2-T'):
            rows[cells[2], cells[3]] = [float(c.strip('*')) for c in cells[4:7]]
    assert sorted(rows) == [('DDP', 'off'), ('DDP', 'on'), ('FSDP x4', 'off'), ('FSDP x4', 'on')]
    for states, activations, peak in rows.values():
        assert peak == pytest.approx(states + activations, abs=0.011)  # printed to 0.01
    # DDP holds 20 B per parameter, FSDP over 4 ranks 16/4 plus the unsharded units
    assert rows['FSDP x4', 'off'][0] < rows['DDP', 'off'][0] / 2
    assert rows['DDP', 'on'][1] < rows['DDP', 'off'][1] / 2


def test_strategies_on_cpu_processes_get_a_cpu_wrapper_and_deepspeed_is_left_alone():
    from mmengine.config import ConfigDict

    from swinv2_backbone.hosts.runner import strategy_to_cpu
    fsdp = ConfigDict(type='SwinV2FSDPStrategy', model_wrapper=dict(use_orig_params=True))
    ddp = ConfigDict(type='DDPStrategy')
    deepspeed = ConfigDict(type='DeepSpeedStrategy', bf16=dict(enabled=True))
    for strategy in (fsdp, ddp, deepspeed):
        strategy_to_cpu(strategy)
    assert fsdp.model_wrapper == dict(use_orig_params=True, device_id='cpu')
    assert ddp.model_wrapper == dict(broadcast_buffers=False, device_ids=None)
    assert 'model_wrapper' not in deepspeed  # DeepSpeedStrategy takes no model_wrapper


def test_a_users_fsdp_strategy_is_known_by_its_class_not_its_name():
    """A subclass of mmengine's FSDPStrategy under a name of its own (here the class itself as
    the type) is sharded like it: a CPU wrapper, and refused without a launcher."""
    from mmengine._strategy import FSDPStrategy
    from mmengine.config import Config, ConfigDict

    from swinv2_backbone.hosts.runner import _check_runner, strategy_to_cpu

    class ShardedEverywhere(FSDPStrategy):
        pass
    strategy = ConfigDict(type=ShardedEverywhere)
    strategy_to_cpu(strategy)
    assert strategy.model_wrapper == dict(device_id='cpu')
    cfg = Config(dict(runner_type='FlexibleRunner', strategy=dict(type=ShardedEverywhere)))
    with pytest.raises(ValueError, match='strategy ShardedEverywhere shards the model'):
        _check_runner(cfg, 'none')
    _check_runner(cfg, 'pytorch')
