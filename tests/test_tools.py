"""tools/train.py, test.py and dist_train.sh on generated COCO and ADE20K data, with the hosts'
real runners, datasets, metrics and hooks; and the errors they give before training starts."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from devkit.synthetic import make_shapes_dataset, shapes_cfg_options

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / 'configs' / 'demo'
DET = DEMO / 'mask-rcnn_swinv2-nano_shapes.py'
SEG = DEMO / 'upernet_swinv2-nano_shapes.py'
# Tests the oldest environment (torch 2.1) leaves to the latest (``latest_only``, see
# tests/conftest.py): a family's model code is the host's, run by both; our backbone and the
# tools are the same in every family, and the oldest still runs them with a detector of each
# kind and a segmenter. Of the benchmark tool, the oldest runs the tests without models.
latest_only = pytest.mark.latest_only
# a small variant of each model family the configs in configs/ use, on the shapes data in the
# real formats (COCO instances, COCO panoptic PNG + JSON, COCO-stuff maps, ADE20K PNGs):
# each trains, validates and resumes; the first of each host is then tested by tools/test.py
FAMILIES = [
    (DET, 'mmdet', 'coco/bbox_mAP'),
    (SEG, 'mmseg', 'mIoU'),
    (DEMO / 'dino_swinv2-nano_shapes.py', 'mmdet', 'coco/bbox_mAP'),
    pytest.param(DEMO / 'mask2former_swinv2-nano_shapes.py', 'mmdet', 'coco/segm_mAP',
                 marks=latest_only),
    pytest.param(DEMO / 'mask2former_swinv2-nano_shapes-panoptic.py', 'mmdet', 'coco/segm_mAP',
                 marks=latest_only),
    pytest.param(DEMO / 'mask2former_swinv2-nano_shapes-semantic.py', 'mmseg', 'mIoU',
                 marks=latest_only),
    pytest.param(DEMO / 'htc_swinv2-nano_shapes.py', 'mmdet', 'coco/segm_mAP',
                 marks=latest_only),
]


def _without(module: str) -> str:
    """Code for ``python -c CODE TOOL ARGS...``: runs TOOL as ``python TOOL ARGS...`` does (its
    folder first on sys.path), with ``module`` made unimportable."""
    return ("import os, runpy, sys\n"
            f"sys.modules[{module!r}] = None\n"
            "sys.argv = sys.argv[1:]\n"
            "sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp('shapes'), num_train=8, num_val=4,
                               size=64)


def options(data, host, iters, **extra):
    opts = {**shapes_cfg_options(data, host), 'train_cfg.max_iters': iters,
            'train_cfg.val_interval': 2, 'default_hooks.checkpoint.interval': 1,
            'default_hooks.logger.interval': 1,
            'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
            'val_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False, **extra}
    return ['--cfg-options', *(f'{k}={v}' for k, v in opts.items())]


def run(*args, cwd=None):
    """Run a tool from another directory than the repository, as users may; tools/dist_*.sh
    on a free port (their default, 29500, may be held by another job on the machine: a
    clean-clone CI run failed so while another test run was launching its own)."""
    proc = subprocess.run([*args], capture_output=True, text=True, cwd=cwd or '/',
                          env={**os.environ, 'PYTHONWARNINGS': 'ignore', 'PYTHON': sys.executable,
                               'PORT': free_port()})
    return proc.returncode, proc.stdout + proc.stderr


def free_port() -> str:
    """A local port no one listens on now."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize('config,host,metric', FAMILIES, ids=lambda v: getattr(v, 'stem', None))
def test_train_validate_checkpoint_and_resume(tmp_path, data, config, host, metric):
    work = tmp_path / 'work'
    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(config),
                    '--work-dir', str(work), *options(data, host, 2))
    assert code == 0, out[-3000:]
    assert 'Iter(train) [2/2]' in out and metric in out
    assert (work / 'iter_2.pth').exists()

    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(config),
                    '--work-dir', str(work), '--resume', *options(data, host, 3))
    assert code == 0, out[-3000:]
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/3]' in out and 'Iter(train) [1/3]' not in out
    assert (work / 'iter_3.pth').exists()
    if config not in (DET, SEG):
        return  # the family's evaluation ran in training; tools/test.py: once per host

    # evaluating a trained model never reads the pretrained weights its config names: they
    # need not be on this machine
    absent = {'model.backbone.init_cfg.type': 'Pretrained',
              'model.backbone.init_cfg.checkpoint': str(tmp_path / 'imagenet.pth')}
    code, out = run(sys.executable, str(ROOT / 'tools' / 'test.py'), str(config),
                    str(work / 'iter_3.pth'), '--work-dir', str(tmp_path / 'test'),
                    *options(data, host, 3, **absent))
    assert code == 0, out[-3000:]
    assert f"'{metric}':" in out.splitlines()[-1]


def test_dist_train_two_cpu_processes_with_gloo(tmp_path, data):
    work = tmp_path / 'work'
    code, out = run('bash', str(ROOT / 'tools' / 'dist_train.sh'), str(SEG), '2',
                    '--work-dir', str(work), *options(data, 'mmseg', 2),
                    cwd=str(tmp_path))
    assert code == 0, out[-3000:]
    (log,) = work.glob('*/*.log')  # the runtime environment: in the log file
    assert 'Distributed training: True' in log.read_text()
    for rank in (0, 1):
        assert f'rank {rank}/2: training finished at iteration 2' in out
    assert 'Iter(train) [2/2]' in out and (work / 'iter_2.pth').exists()


def test_train_and_test_leave_the_process_group_when_done(tmp_path):
    """What tools/train.py and tools/test.py call last: without it a gloo rank can abort at
    exit after training finished (SIGABRT seen in CI with torch 2.1), failing the launch."""
    import torch.distributed as dist
    from swinv2_backbone.hosts.runner import finish_distributed
    finish_distributed()  # no group: nothing to do
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    try:
        # a DDP model in a reference cycle, as a runner and its hooks hold one: it holds the
        # group, so it must be freed before the group is left, not at interpreter exit
        cycle = {'model': torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))}
        cycle['self'] = cycle
        model = weakref.ref(cycle['model'])
        del cycle
        finish_distributed()
        assert not dist.is_initialized()
        assert model() is None, 'the DDP model outlived its process group'
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize('override,message', [
    ({'model.neck.in_channels': '[32,64,128,512]'},
     'model.neck.in_channels is [32, 64, 128, 512] but the SwinV2 backbone'),
    ({'train_dataloader.dataset.data_root': '/nonexistent/coco'},
     'train_dataloader.dataset.data_root does not exist: /nonexistent/coco'),
    ({'model.backbone.init_cfg.type': 'Pretrained',
      'model.backbone.init_cfg.checkpoint': '/no/such/swinv2.pth'},
     'model.backbone.init_cfg.checkpoint does not exist: /no/such/swinv2.pth'),
])
def test_bad_configs_fail_before_training(tmp_path, data, override, message):
    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(DET),
                    '--work-dir', str(tmp_path / 'work'), *options(data, 'mmdet', 2, **override))
    assert code == 2 and message in out, out[-2000:]
    assert 'Iter(train)' not in out


@pytest.mark.parametrize('config,host', [(DET, 'mmdet'), (SEG, 'mmseg')])
def test_config_whose_host_is_missing_says_what_to_install(tmp_path, data, config, host):
    """train.py in an environment without the config's host (hidden from the import system,
    as if not installed) stops with the pip line that fixes it, before anything runs."""
    boot = _without(host)
    code, out = run(sys.executable, '-c', boot, str(ROOT / 'tools' / 'train.py'), str(config),
                    '--work-dir', str(tmp_path / 'work'), *options(data, host, 2))
    assert code == 2, out[-2000:]
    assert f'this is an {host} config, but {host} does not import here' in out
    assert f'pip install "swinv2_backbone[{host}]"' in out


def test_amp_on_cpu_is_refused_with_a_reason(tmp_path, data):
    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(SEG), '--amp',
                    '--work-dir', str(tmp_path / 'work'), *options(data, 'mmseg', 2))
    assert code == 2 and '--amp needs a GPU' in out


def test_get_flops_reports_swinv2_tiny_at_256():
    code, out = run(sys.executable, str(ROOT / 'tools' / 'get_flops.py'),
                    str(ROOT / 'configs' / 'mmdet' / 'mask-rcnn_swinv2-t-w16_fpn_1x_coco.py'),
                    '--shape', '256', '256')
    assert code == 0, out[-2000:]
    # the paper's SwinV2-T (window 16, 256 px): 28 M parameters, 6.6 GFLOPs
    assert 'backbone 27.58 M' in out
    # "  FLOPs: total T G, backbone B G, neck N G, ...": the heads are counted too
    line = next(t for t in out.splitlines() if t.startswith('  FLOPs: total '))
    total, *parts = line.removeprefix('  FLOPs: total ').split(', ')
    gflops = {name: float(value) for name, value, _ in (p.split(' ') for p in parts)}
    assert list(gflops) == ['backbone', 'neck', 'rpn_head', 'roi_head']
    assert 6.5 < gflops['backbone'] < 6.8 and gflops['roi_head'] > 0
    assert abs(float(total.split(' ')[0]) - sum(gflops.values())) < 0.05


@latest_only
def test_get_flops_measures_an_ade20k_config_at_its_crop_with_the_decode_head():
    code, out = run(sys.executable, str(ROOT / 'tools' / 'get_flops.py'), str(
        ROOT / 'configs' / 'mmseg' / 'upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py'))
    assert code == 0, out[-2000:]
    assert 'input (3, 512, 512)' in out
    decode = float(out.split('decode_head ')[-1].split(' G')[0])
    assert decode > 100  # UperNet's head at 512 x 512 costs more than the SwinV2-T backbone


@latest_only
def test_benchmark_tool_reports_every_implementation_ops_and_bf16(tmp_path):
    """tools/benchmark.py end to end at a small size: a row per implementation (ours in fp32 as
    well under --amp bf16) with its op count, both matmul rates, the bf16 speed ratio and error
    per stage."""
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--size', '64', '96', '--rounds', '2',
         '--warmup', '1', '--amp', 'bf16', '--impls', 'swinv2_backbone', 'timm', '--no-memory',
         '--json', str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    names = [r['implementation'] for r in result['rows']]
    assert names == ['swinv2_backbone', 'swinv2_backbone (fp32)', 'timm']
    assert all(0 < r['best_ms'] <= r['median_ms'] for r in result['rows'])
    ops = {r['implementation']: r['ops'] for r in result['rows']}
    assert ops['swinv2_backbone'] > 100 and ops['timm'] > 100
    assert result['matmul_gflops']['mm'] > 0 and result['matmul_gflops']['onednn'] > 0
    assert result['bf16_speedup_over_own_fp32'] > 0
    for key in ('autocast', 'bf16_weights'):
        assert len(result['bf16_error'][key]) == 4
        for e in result['bf16_error'][key]:  # bf16 keeps about 3 significant digits
            assert 0 < e['mean'] <= e['rms'] <= e['max'] < 0.5
    assert 'bf16 autocast:' in proc.stdout and 'bf16-rounded weights' in proc.stdout


def test_benchmark_tool_refuses_a_memory_median_of_no_runs():
    proc = subprocess.run([sys.executable, 'tools/benchmark.py', '--memory-runs', '0'], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert '--memory-runs must be at least 1, not 0' in proc.stderr


def test_keep_ratio_batches_are_the_shapes_mmdets_pipeline_makes():
    """The varying shapes of ``tools/benchmark.py --resize``: for pairs of COCO sizes, the padded
    batch that mmdet's own ``Resize(scale=(1333, 800), keep_ratio=True)`` and
    ``DetDataPreprocessor(pad_size_divisor=32)`` make."""
    import numpy as np
    from mmdet.datasets.transforms import Resize
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    from devkit import benchmark
    resize = Resize(scale=(1333, 800), keep_ratio=True)
    preprocessor = DetDataPreprocessor(pad_size_divisor=32)
    resized = {size: resize(dict(img=np.zeros((*size, 3), np.uint8)))['img']
               for size in benchmark.COCO_SIZES}
    pairs = [(a, b) for a in benchmark.COCO_SIZES for b in benchmark.COCO_SIZES[::3]]
    for pair in pairs:
        batch = preprocessor(dict(inputs=[torch.from_numpy(resized[s]).permute(2, 0, 1)
                                          for s in pair]))['inputs']
        assert tuple(batch.shape[-2:]) == benchmark.keep_ratio_batch(pair), pair
    shapes = benchmark.keep_ratio_shapes(50, 2)
    assert shapes == benchmark.keep_ratio_shapes(50, 2)  # the same sequence on every run
    every_pair = {benchmark.keep_ratio_batch((a, b))
                  for a in benchmark.COCO_SIZES for b in benchmark.COCO_SIZES}
    assert len(set(shapes)) >= 5 and set(shapes) <= every_pair


def test_benchmark_gives_each_round_its_shape_and_builds_for_any_size(monkeypatch):
    """``run_benchmark(shapes=...)``: round r's input has ``shapes[r]`` (every implementation in
    the round the same); timm is built with ``dynamic_img_size``; one-size rows are refused."""
    from devkit import benchmark
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return (x.mean((1, 2, 3)),)
    monkeypatch.setitem(benchmark.IMPLEMENTATIONS, 'hf', lambda size, window: Recorder())
    shapes = [(64, 96), (96, 64), (128, 64)]
    times = benchmark.run_benchmark(['hf', 'swinv2_backbone'], (64, 64), 8, 'inference', 2,
                                    rounds=2, warmup=1, shapes=shapes, log=lambda _: None)
    assert seen == [(2, 3, *s) for s in shapes] and [len(t) for t in times.values()] == [2, 2]
    timm = benchmark.build('timm', (64, 64), 8, any_size=True)
    assert [o.shape[-2:] for o in timm(torch.randn(1, 3, 96, 64))][0] == (24, 16)
    with pytest.raises(ValueError, match='one size only'):
        benchmark.build('timm (cuda_graph)', (64, 64), 8, any_size=True)


def test_benchmark_default_rows_per_device_mode_runtime_and_shapes():
    """The rows tools/benchmark.py times when none are named."""
    from devkit.benchmark import RUNTIMES, default_impls
    cpu = default_impls('cpu', 'inference')
    assert {'swinv2_backbone', 'timm', 'hf', 'mmpretrain'} <= set(cpu)
    assert not any(word in n for word in ('cuda_graph', 'unfused', 'with_cp', 'GEMMs', *RUNTIMES)
                   for n in cpu)
    gpu = default_impls('cuda', 'inference')
    assert {'swinv2_backbone (cuda_graph)', 'swinv2_backbone (unfused)', 'timm (cuda_graph)'} \
        <= set(gpu)
    assert 'timm (cuda_graph)' not in default_impls('cuda', 'training')
    assert default_impls('cpu', 'inference', 'openvino', 'bf16')[len(cpu):] == [
        'swinv2_backbone (openvino bf16)', 'timm (openvino bf16)',
        'swinv2_backbone (openvino bf16, static)', 'timm (openvino bf16, static)']
    assert default_impls('cpu', 'inference', 'onnxruntime')[-1] == 'timm (onnxruntime, static)'
    varying = default_impls('cuda', 'training', any_size=True)
    assert 'mmpretrain' not in varying and {'timm', 'hf', 'swinv2_backbone (unfused)'} \
        <= set(varying)


@latest_only
def test_benchmark_tool_times_varying_shapes(tmp_path):
    """``tools/benchmark.py --resize``: a training run whose shape changes every round, timed by
    the mean, its shapes in the JSON; rows of one size are refused by name."""
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--resize', '200', '120', '--batch', '2',
         '--mode', 'training', '--rounds', '3', '--warmup', '1', '--no-memory',
         '--impls', 'swinv2_backbone', 'timm', '--keep-freed-memory', '--json', str(out)],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'freed memory kept' in proc.stdout.splitlines()[0]
    result = json.loads(out.read_text())
    assert result['args']['keep_freed_memory']
    assert len(result['shapes']) == 4 and len(set(map(tuple, result['shapes']))) > 1
    for row in result['rows']:
        assert 0 < row['best_ms'] <= row['mean_ms'] and row['ops'] > 100
    proc = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--resize', '200', '120', '--impls', 'mmpretrain'],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and 'mmpretrain take(s) inputs of one size only' in proc.stderr


# a minute of CI; the GPU machines' image runs a recent PyTorch, as the latest environment does
@latest_only
def test_gpu_check_script_rehearses_every_step_on_the_cpu(tmp_path):
    """tools/gpu_check.sh, the one script a lent GPU machine runs, in its CPU rehearsal: every
    step (tests, both training benchmarks, inference, the profile) ends with exit 0 and the
    result tables are printed. The rehearsal runs its steps without the GPU's time limits,
    so how busy the machine is cannot fail it."""
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_DEVICE='cpu', OUT=str(tmp_path))
    proc = subprocess.run(['bash', 'tools/gpu_check.sh'], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert '(time limit: 0 s)' in proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = (tmp_path / 'summary.txt').read_text().splitlines()
    assert [line.split(':')[0] for line in summary] == [
        'environment', 'train_1024', 'train_varying', 'test_gpu', 'inference_800x1344',
        'profile_training']
    assert all(': exit 0 after' in line for line in summary), summary
    for name in ('train_1024', 'train_varying', 'inference_800x1344'):
        rows = json.loads((tmp_path / f'{name}.json').read_text())['rows']
        assert {'swinv2_backbone', 'timm', 'hf'} <= {r['implementation'] for r in rows}
    assert proc.stdout.count('vs best peer') == 3 and 'skipped' in proc.stdout


_REALLOCATING = """
import resource, sys, torch
from devkit.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == 'keep' else None
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = torch.ones(16 << 20)  # 64 MiB, a large activation
    del buffer
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, min(faults[1:]), *faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason="glibc's malloc only")
def test_keep_freed_memory_lets_freed_memory_be_taken_again_without_page_faults():
    """devkit/allocator.py, in processes of their own (the setting is process-wide): a 64 MiB
    tensor freed and made again faults in all its 16,384 pages every time under glibc's
    defaults (served by ``mmap``, unmapped when freed); once the process keeps freed memory,
    it is taken again without a fault (at least once in eleven: where an aligned block lands
    in the heap varies); a limit that is no int of bytes is refused."""
    from devkit.allocator import keep_freed_memory
    results = {}
    for how in ('default', 'keep'):
        out = subprocess.run([sys.executable, '-c', _REALLOCATING, how], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        results[how] = out.stdout.split()
    assert results['default'][0] == 'None' and int(results['default'][1]) >= 16384, results
    assert results['keep'][:2] == ['True', '0'], results
    for limit in (0, 1 << 31, 2.5):
        with pytest.raises(ValueError, match='limit must be an int of bytes'):
            keep_freed_memory(limit)


@latest_only
@pytest.mark.parametrize('name', ['swinv2_backbone (openvino)', 'timm (openvino)',
                                  'swinv2_backbone (onnxruntime, static)',
                                  'timm (onnxruntime, static)'])
def test_benchmark_runtime_rows_compute_what_their_model_computes(name):
    """An exported row of tools/benchmark.py times the model it names: its outputs equal the
    PyTorch model's (float32), and a row for any size (ours, and timm built with
    ``dynamic_img_size``) runs its one file at a second size and batch too."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('openvino')
    from devkit import benchmark
    row = benchmark.build(name, (64, 96), 8).eval()
    sizes = [(1, 64, 96)] + ([] if 'static' in name else [(2, 96, 64)])
    for B, H, W in sizes:
        x = torch.randn(B, 3, H, W)
        with torch.no_grad():
            got, want = row(x), row.example_model(x)
        assert len(got) == len(want) == 4
        for g, w in zip(got, want):
            assert g.shape == w.shape
            assert (g - w).abs().max() <= 1e-4 * w.std(), (name, (B, H, W))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the error is for machines without a GPU')
def test_benchmark_tool_refuses_a_missing_gpu_by_name():
    proc = subprocess.run([sys.executable, 'tools/benchmark.py', '--device', 'cuda'], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and '--device cuda: no GPU is visible' in proc.stderr


def test_a_graphed_peer_counts_its_eager_ops_and_refuses_what_it_cannot_replay():
    """'timm (cuda_graph)' replays timm's CUDA inference from a graph; on the meta device (op
    counts) it is timm, and off CUDA or with autograd it says so instead of timing eager timm
    under a graphed name."""
    from devkit import benchmark
    graphed = benchmark.build('timm (cuda_graph)', (64, 96), 8).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        with pytest.raises(ValueError, match='CUDA inference only, not cpu'):
            graphed(x)
        want = [o.shape for o in benchmark.build('timm', (64, 96), 8).to('meta')(x.to('meta'))]
        assert [o.shape for o in graphed.to('meta')(x.to('meta'))] == want


def test_memory_of_a_step_is_measured_in_its_own_process():
    from devkit import benchmark
    assert benchmark.measure_memory('swinv2_backbone', (64, 64), 8, 'training', 1, runs=1) > 0
    with pytest.raises(ValueError, match='runs must be a positive int, not 0'):
        benchmark.measure_memory('swinv2_backbone', (64, 64), 8, 'training', 1, runs=0)


def test_the_gemm_bound_is_the_model_flops_at_the_fastest_matmul_rate():
    """What tools/benchmark.py prints as the most any implementation can gain on a machine."""
    from devkit import benchmark
    assert benchmark.gemm_bound_ms(285.4, {'mm': 50.0, 'onednn': 100.0}) == pytest.approx(2854.0)
    assert benchmark.matmul_gflops(n=64, repeats=3) > 0


def test_demo_pictures_draw_at_the_threshold_with_the_best_f1():
    """Two shapes; detections: one right at 0.9, a wrong class at 0.6, the other right at 0.3.
    A fixed 0.5 would hide the second shape; the best F1 (0.8) keeps everything from 0.3."""
    import torch
    from devkit.demo import best_f1_threshold
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample()
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]),
                                       labels=torch.tensor([0, 1]))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0., 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 31]]),
        labels=torch.tensor([0, 2, 1]), scores=torch.tensor([0.9, 0.6, 0.3]))
    threshold, f1 = best_f1_threshold([sample])
    assert threshold == pytest.approx(0.3) and f1 == pytest.approx(0.8)


def test_demo_pictures_show_predicted_masks_on_shapes_of_their_own_colour():
    """The shapes are painted in their class colours: a mask drawn as a tint of that colour
    was invisible. Much of the mask must now differ from the shape, and the box still shows."""
    import numpy as np
    from PIL import Image

    from devkit.demo import COLOURS, draw_instances
    img = np.full((40, 40, 3), 200, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    img[mask] = COLOURS[1]
    out = np.asarray(draw_instances(Image.fromarray(img), [[10, 10, 30, 30]], [1], [mask], 2))
    inside = out[np.kron(mask, np.ones((2, 2), bool))].astype(int)
    changed = np.abs(inside - np.array(COLOURS[1])).sum(1) > 60
    assert changed.mean() > 0.3, changed.mean()


@latest_only
def test_demo_without_torchvision_finishes_with_its_picture_and_summary(tmp_path):
    """No extra installs torchvision: the demo (a few iterations) runs to its picture and
    summary with torchvision hidden from the import system, as if not installed."""
    boot = _without('torchvision')
    code, out = run(sys.executable, '-c', boot, str(ROOT / 'tools' / 'demo.py'), '--out',
                    str(tmp_path), '--det-iters', '2', '--seg-iters', '2', '--num-train', '4',
                    '--num-val', '2')
    assert code == 1 and '[demo] BELOW TARGET' in out, out[-3000:]  # 2 iterations learn nothing
    assert (tmp_path / 'predictions.png').stat().st_size > 0
    assert 'coco/bbox_mAP' in out and "No module named 'torchvision'" not in out


def test_demo_missing_a_host_says_so_before_it_starts(tmp_path):
    boot = _without('mmseg')
    code, out = run(sys.executable, '-c', boot, str(ROOT / 'tools' / 'demo.py'), '--out',
                    str(tmp_path / 'demo'))
    assert code == 2 and 'but mmseg does not import here' in out, out[-2000:]
    assert not (tmp_path / 'demo').exists()  # checked before any work


def test_a_config_key_typo_is_one_error_line_naming_the_key(tmp_path, data):
    code, out = run(sys.executable, str(ROOT / 'tools' / 'test.py'), str(SEG),
                    str(tmp_path / 'none.pth'), *options(data, 'mmseg', 2,
                                                         **{'model.backbone.window_sise': 8}))
    assert code == 2, out[-2000:]
    assert "error: model.backbone: SwinV2Backbone has no argument 'window_sise'; did you mean " \
           "'window_size'?" in out
    assert 'Traceback' not in out


def test_tools_help_explains_each_option_once_and_the_launchers_print_their_usage():
    def help_of(tool):
        code, out = run(sys.executable, str(ROOT / 'tools' / tool), '--help')
        assert code == 0, out[-2000:]
        return out
    bench = help_of('benchmark.py')
    assert bench.count("'timm (openvino bf16, static)'") == 1  # the choices listed once
    extract = help_of('extract_features.py')
    for words in ('folders (searched recursively) or glob', "'short:N'", "'fixed:HxW'",
                  'attention window', 'the maps to write'):
        assert words in ' '.join(extract.split()), words
    export = ' '.join(help_of('export.py').split())
    assert "default 'torchscript' (seconds)" in export and 'ONNX opset' in export
    assert "'quick': SwinV2-T only" in ' '.join(help_of('estimate_memory.py').split())
    demo = help_of('demo.py')
    assert 'Train a small SwinV2 Mask R-CNN and UperNet' in ' '.join(demo.split())
    for launcher, usage in (('dist_train.sh', 'CONFIG NPROC'),
                            ('dist_test.sh', 'CONFIG CHECKPOINT NPROC')):
        code, out = run('bash', str(ROOT / 'tools' / launcher))
        assert code == 2 and f'usage: tools/{launcher} {usage}' in out, out
        assert 'unbound variable' not in out


@latest_only
def test_logs_leave_out_per_parameter_options_and_pkg_resources_warnings(tmp_path, data):
    """The demo's log listed every parameter's options (hundreds of lines), every tool began
    with setuptools' pkg_resources warning and the Runner's environment and whole config: the
    options at DEBUG, the warning silenced, the start-up in the log file only."""
    work = tmp_path / 'work'
    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(SEG), '--work-dir',
                    str(work), *options(data, 'mmseg', 1))
    assert code == 0, out[-2000:]
    assert 'Iter(train) [1/1]' in out and 'paramwise_options --' not in out
    (log,) = work.glob('*/*.log')
    assert 'paramwise_options --' not in log.read_text()
    # the Runner's start-up (environment, whole config, hook order) in the log file only
    for startup in ('System environment:', 'Config:\n', 'Hooks will be executed'):
        assert startup not in out and startup in log.read_text(), startup
    assert f'the environment, the whole config and the hook order: {log}' in out
    code, out = run(sys.executable, str(ROOT / 'tools' / 'train.py'), str(SEG), '--work-dir',
                    str(tmp_path / 'debug'), *options(data, 'mmseg', 1, log_level='DEBUG'))
    assert code == 0 and 'paramwise_options --' in out  # still there when asked for
    proc = subprocess.run([sys.executable, '-W', 'default', '-c',
                           'import swinv2_backbone, mmdet.models, mmseg.models'],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and 'pkg_resources is deprecated' not in proc.stderr, \
        proc.stderr[-2000:]


def test_deploy_without_mmdeploy_gives_the_install_line_that_works(tmp_path):
    """mmdeploy hidden from the import system, as if not installed: the line printed installs
    it with aenum, which mmdeploy imports and --no-deps would leave out."""
    boot = _without('mmdeploy')
    checkpoint, image = tmp_path / 'w.pth', tmp_path / 'a.jpg'
    checkpoint.write_bytes(b'0')
    image.write_bytes(b'0')
    code, out = run(sys.executable, '-c', boot, str(ROOT / 'tools' / 'deploy.py'),
                    str(ROOT / 'configs' / 'deploy' / 'segmentation_onnxruntime_dynamic.py'),
                    str(SEG), str(checkpoint), str(image), '--out', str(tmp_path / 'm.onnx'))
    assert code == 2, out[-2000:]
    assert 'pip install --no-deps "mmdeploy==1.3.1" aenum' in out


TINY_DEMO = ['--det-iters', '2', '--seg-iters', '2', '--num-train', '8', '--num-val', '4']


@latest_only
def test_the_readme_quick_start_runs_as_written(tmp_path):
    """Every command of the README's quick start, in a fresh folder holding the checkout's
    configs/ and tools/ (as `cd /path/to/swinv2_backbone` gives), with the demo's tiny settings:
    2 iterations, so the checkpoints are iter_2.pth and the demo reports it is below target."""
    import shlex
    readme = (ROOT / 'README.md').read_text()
    block = readme.split('## Quick start', 1)[1].split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert commands[0] == ['cd', '/path/to/swinv2_backbone'], commands[0]
    tools = ['tools/demo.py', 'tools/test.py', 'tools/extract_features.py', 'tools/export.py',
             'tools/deploy.py']
    assert [c[1] for c in commands[1:]] == tools
    for name in ('configs', 'tools'):
        (tmp_path / name).symlink_to(ROOT / name)
    for command in commands[1:]:
        assert command[0] == 'python'
        args = [a.replace('iter_400.pth', 'iter_2.pth').replace('iter_600.pth', 'iter_2.pth')
                for a in command[1:]]
        if args[0] == 'tools/demo.py':
            args += TINY_DEMO
        code, out = run(sys.executable, *args, cwd=tmp_path)
        if args[0] == 'tools/demo.py':  # 2 iterations learn nothing, and it says so
            assert code == 1 and '[demo] BELOW TARGET' in out, out[-3000:]
            assert (tmp_path / 'demo_out' / 'predictions.png').is_file()
        else:
            assert code == 0, (args, out[-3000:])
    assert (tmp_path / 'demo_out' / 'swinv2.onnx').is_file()
    assert (tmp_path / 'demo_out' / 'upernet.onnx').is_file()
    assert len(list((tmp_path / 'demo_out' / 'features').rglob('*.npz'))) == 4
