"""FSDP through mmengine's FlexibleRunner (issue 26), with the real runners, datasets and metrics,
on 2 gloo processes: a detector and a segmenter train with the losses DDP gives from the same
weights; the demo config trains in bf16, checkpoints (whole or sharded), resumes at the right
iteration and is evaluated. And the model parts FSDP's mixed precision relies on (bf16 weights,
float32 buffers, no autocast) on every execution path, in both environments."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from swinv2_backbone.devkit.testing import randomize_
from swinv2_backbone.devkit.synthetic import make_shapes_dataset
from test_tools import DEMO, ROOT, options, run

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.compat import TORCH_VERSION
from swinv2_backbone.devkit.activations import FAKE_CUDA, NO_FAKE_CUDA
from swinv2_backbone.hosts.runner import build_model, build_runner, load_config

# measured: torch 2.14.1's FSDP runs on the CPU with gloo; torch 2.1.2's does not (its stream
# set-up calls torch.cpu.Stream(priority=...): "TypeError: Stream() takes no arguments")
needs_cpu_fsdp = pytest.mark.skipif(TORCH_VERSION < (2, 14),
                                    reason='torch < 2.14: FSDP untested or not running on CPU')
FAMILIES = {'mmdet': 'mask-rcnn_swinv2-nano_shapes', 'mmseg': 'upernet_swinv2-nano_shapes'}
UNITS = 9  # one per block of the demos' backbone (2+2+2+2) and the root
# the same weights and data: FSDP's reduce-scatter and DDP's all-reduce of 2 ranks' float32
# gradients agree to rounding, and did to every printed digit when measured
LOSS_RTOL = 1e-5


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
    """Rank 0's loss per iteration, from the run's scalars log."""
    (log,) = work.glob('*/vis_data/scalars.json')
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return {row['iter']: row['loss'] for row in rows if 'loss' in row}


def dist_train(config, work, data, host, iters, *flags, **extra):
    code, out = run('bash', str(ROOT / 'tools' / 'dist_train.sh'), str(config), '2',
                    '--work-dir', str(work), *flags, *options(data, host, iters, **extra))
    assert code == 0, out[-3000:]
    return out


@needs_cpu_fsdp
@pytest.mark.parametrize('host', FAMILIES)
def test_fsdp_trains_with_the_losses_of_ddp(tmp_path, data, host):
    name = FAMILIES[host]
    init = tmp_path / 'init.pth'  # both runs start from these weights
    torch.manual_seed(0)
    model = build_model(load_config(DEMO / f'{name}.py'))
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, init)
    ddp = dist_train(DEMO / f'{name}.py', tmp_path / 'ddp', data, host, 3,
                     **{'model.backbone.with_cp': True, 'load_from': init})
    fsdp = dist_train(DEMO / f'{name}_fsdp.py', tmp_path / 'fsdp', data, host, 3,
                      **{'strategy.model_wrapper.mixed_precision': None, 'load_from': init})
    assert 'MMDistributedDataParallel' in ddp
    assert f'FSDP: {UNITS} units over 2 processes' in fsdp
    want, got = losses(tmp_path / 'ddp'), losses(tmp_path / 'fsdp')
    assert sorted(want) == sorted(got) == [1, 2, 3]
    assert all(abs(got[i] - want[i]) <= LOSS_RTOL * abs(want[i]) for i in want), (got, want)
    assert got[3] != got[1]  # it trained
    if host == 'mmseg':  # DDP through the FlexibleRunner's strategy too
        dist_train(DEMO / f'{name}.py', tmp_path / 'strategy', data, host, 3,
                   **{'model.backbone.with_cp': True, 'load_from': init,
                      'runner_type': 'FlexibleRunner', 'strategy.type': 'DDPStrategy'})
        assert losses(tmp_path / 'strategy') == want


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
    from swinv2_backbone.devkit.memory import checkpointed_inputs_mib
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
