"""Feature-pyramid extraction: shapes follow the contract, reruns resume, bad images are
skipped, pictures are written, failed writes leave nothing behind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swinv2_backbone import SwinV2Backbone, save_checkpoint
from swinv2_backbone.apps.extract import build_extractor, extract_features, find_images

ROOT = Path(__file__).resolve().parent.parent
ARCH = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
SIZES = {'a.png': (64, 48), 'sub/b.jpg': (37, 90), 'sub/c.png': (100, 100)}


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'images'
    for name, (h, w) in SIZES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return folder


def model(**kw):
    return build_extractor(arch=ARCH, window_size=4, device='cpu', **kw)


def test_outputs_follow_the_declared_contract(tmp_path, images):
    m = model(out_features=['stem', 'stage2', 'stage4'])
    summary = extract_features(m, find_images([str(images)]), tmp_path / 'out', progress=False)
    assert len(summary.done) == 3 and list(summary.failed) == [str(images / 'broken.jpg')]
    for name, (h, w) in SIZES.items():
        data = np.load(tmp_path / 'out' / Path(name).with_suffix('.npz'))
        meta = json.loads(str(data['meta']))
        assert meta['image_size'] == [h, w]
        for stage, c, s in zip(m.out_features, m.out_channels, m.out_strides):
            assert data[stage].shape == (c, -(-h // s), -(-w // s))
            assert data[stage].dtype == np.float32
            assert meta['stages'][stage] == dict(shape=list(data[stage].shape), stride=s,
                                                 channels=c)


def test_a_folder_or_pattern_given_as_one_string_is_searched_not_spelt(tmp_path, images):
    """From Python as from the tool: one string is one input (a folder here, a glob below)."""
    summary = extract_features(model(), str(images), tmp_path / 'out', progress=False)
    assert len(summary.done) == 3 and list(summary.failed) == [str(images / 'broken.jpg')]
    summary = extract_features(model(), images / 'sub', tmp_path / 'sub', progress=False)
    assert len(summary.done) == 2 and not summary.failed
    assert find_images(str(images / '*.png')) == [images / 'a.png']


def test_an_empty_folder_or_pattern_is_an_error_not_an_empty_run(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no images here')
    with pytest.raises(FileNotFoundError, match='no image .* in the folder'):
        extract_features(model(), str(empty), tmp_path / 'out', progress=False)
    with pytest.raises(FileNotFoundError, match='no image matches'):
        find_images([str(empty / '*.txt')])
    assert not (tmp_path / 'out').exists()  # nothing written
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'extract_features.py'),
                           str(empty), '--out', str(tmp_path / 'out'), '--arch', 'tiny'],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'error: no image' in proc.stderr, proc.stderr[-2000:]


def test_rerun_skips_finished_images_and_keeps_their_files(tmp_path, images):
    out = tmp_path / 'out'
    extract_features(model(), find_images([str(images)]), out, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*.npz')}
    (out / 'a.npz').unlink()
    summary = extract_features(model(), find_images([str(images)]), out, progress=False)
    assert summary.done == [str(images / 'a.png')]
    assert sorted(summary.skipped) == sorted(str(images / n) for n in ('sub/b.jpg', 'sub/c.png'))
    for p, t in before.items():
        if p.name != 'a.npz':
            assert p.stat().st_mtime_ns == t


def test_safetensors_float16_and_resize_policies(tmp_path, images):
    from safetensors.numpy import load_file
    m = model()
    extract_features(m, [images / 'sub' / 'b.jpg'], tmp_path / 'st', fmt='safetensors',
                     fp16=True, resize='short:64', progress=False)
    data = load_file(tmp_path / 'st' / 'b.safetensors')
    assert data['stage1'].dtype == np.float16 and data['stage1'].shape == (16, 16, 39)
    extract_features(m, [images / 'a.png'], tmp_path / 'fx', resize='fixed:32x96',
                     progress=False)
    assert np.load(tmp_path / 'fx' / 'a.npz')['stage4'].shape == (128, 1, 3)
    with pytest.raises(ValueError, match="'short:N'"):
        extract_features(m, [images / 'a.png'], tmp_path / 'x', resize='half')


def test_single_file_holds_every_image(tmp_path, images):
    extract_features(model(), find_images([str(images / '*.png'), str(images / 'sub')]),
                     tmp_path / 'out', single_file=tmp_path / 'all.npz', progress=False)
    data = np.load(tmp_path / 'all.npz')
    meta = json.loads(str(data['meta']))
    assert [Path(m['image']).name for m in meta['images']] == ['a.png', 'b.jpg', 'c.png']
    assert data['000001/stage1'].shape == (16, 10, 23)


def test_vis_writes_a_picture_of_each_stage(tmp_path, images):
    extract_features(model(), [images / 'a.png'], tmp_path / 'out', vis=True, progress=False)
    pic = Image.open(tmp_path / 'out' / 'a.png')
    assert pic.size == (5 * (48 + 6), 64 + 18)  # input + 4 stages, titled
    assert len(set(pic.getdata())) > 50  # not blank


def test_failed_writes_leave_no_partial_files(tmp_path, images, monkeypatch):
    from swinv2_backbone.apps import extract

    def half_then_fail(f, **arrays):
        f.write(b'PK\x03\x04 half an archive')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(extract.np, 'savez', half_then_fail)
    out = tmp_path / 'out'
    with pytest.raises(OSError, match='No space left'):
        extract_features(model(), [images / 'a.png'], out, progress=False)
    assert [p for p in out.rglob('*') if p.is_file()] == []


def test_cli_with_a_checkpoint_and_auto_arch(tmp_path, images):
    src = SwinV2Backbone(arch=ARCH, window_size=4)
    src.init_weights()
    save_checkpoint(src.state_dict(), tmp_path / 'w.pth')
    run = subprocess.run([sys.executable, str(ROOT / 'tools' / 'extract_features.py'),
                          str(images), '--out', str(tmp_path / 'out'), '--arch', 'auto',
                          '--checkpoint', str(tmp_path / 'w.pth'), '--window', '4'],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert re.search(r'^images done +3$', run.stdout, re.M)
    assert re.search(r'^failed +1$', run.stdout, re.M)
    assert 'broken.jpg' in run.stdout
    assert (tmp_path / 'out' / 'sub' / 'c.npz').exists()
    assert 'random weights' not in run.stderr


def test_a_model_without_weights_says_its_features_are_random(tmp_path, images):
    with pytest.warns(UserWarning, match='no checkpoint: the backbone has random weights'):
        model()
    run = subprocess.run([sys.executable, str(ROOT / 'tools' / 'extract_features.py'),
                          str(images / 'a.png'), '--out', str(tmp_path / 'out'), '--arch',
                          'tiny', '--window', '4'], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'no checkpoint: the backbone has random weights' in run.stderr


# the oldest environment runs the one-process extraction; torchrun's only the latest (CI time,
# tests/conftest.py)
@pytest.mark.latest_only
def test_two_processes_write_exactly_the_files_and_values_of_one(tmp_path, images):
    """torchrun with 2 gloo processes shares the images by batches of one size: the same files,
    index and feature values (bit for bit) as one process; a rerun resumes."""
    rng = np.random.default_rng(1)
    (images / 'same').mkdir()
    for i in range(5):  # batches of equal sizes to share
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            images / 'same' / f'{i}.png')
    src = SwinV2Backbone(arch=ARCH, window_size=4)
    src.init_weights()
    save_checkpoint(src.state_dict(), tmp_path / 'w.pth')
    args = [str(ROOT / 'tools' / 'extract_features.py'), str(images), '--arch', 'auto',
            '--checkpoint', str(tmp_path / 'w.pth'), '--window', '4', '--batch-size', '2']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}  # the same GEMM kernels in every process

    def extract(out, *launcher):
        run = subprocess.run([sys.executable, *launcher, *args, '--out', str(out)],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        return run.stdout
    one = extract(tmp_path / 'one')
    two = extract(tmp_path / 'two', '-m', 'torch.distributed.run', '--standalone',
                  '--nproc_per_node', '2')
    for out in (one, two):
        assert re.search(r'^images done +8$', out, re.M), out
        assert re.search(r'^failed +1$', out, re.M), out
    files = sorted(p.relative_to(tmp_path / 'one') for p in (tmp_path / 'one').rglob('*')
                   if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / 'two') for p in
                           (tmp_path / 'two').rglob('*') if p.is_file())
    assert len(files) == 9  # 8 images and the index
    index = json.loads((tmp_path / 'one' / 'index.json').read_text())
    assert len(index['images']) == 8 and list(index['failed']) == [str(images / 'broken.jpg')]
    assert (tmp_path / 'two' / 'index.json').read_text() == \
        (tmp_path / 'one' / 'index.json').read_text()
    for f in files:
        if f.suffix == '.npz':
            a, b = np.load(tmp_path / 'one' / f), np.load(tmp_path / 'two' / f)
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (f, key)
    (tmp_path / 'two' / 'same' / '3.npz').unlink()
    again = extract(tmp_path / 'two', '-m', 'torch.distributed.run', '--standalone',
                    '--nproc_per_node', '2')
    assert re.search(r'^images done +1$', again, re.M), again
    assert re.search(r'^skipped \(already done\) +7$', again, re.M), again
    assert np.array_equal(np.load(tmp_path / 'two' / 'same' / '3.npz')['stage1'],
                          np.load(tmp_path / 'one' / 'same' / '3.npz')['stage1'])


def _extract_and_fail_on_rank_1(rank: int, folder: str, out: str, rendezvous: str) -> None:
    """A worker of the test below: rank 1's model raises; each rank writes what it raised."""
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{rendezvous}', rank=rank, world_size=2)
    extractor = model()
    if rank == 1:
        def broken(x):
            raise RuntimeError('out of memory (made up)')
        extractor.forward = broken
    try:
        extract_features(extractor, find_images([folder]), out, batch_size=1, shard=(rank, 2))
        outcome = 'no error'
    except RuntimeError as e:
        outcome = str(e)
    Path(out, f'rank{rank}.part').write_text(outcome)
    Path(out, f'rank{rank}.part').rename(Path(out, f'rank{rank}.txt'))
    # no finish_distributed: the processes exit with their group, as torchrun's agent ends
    # them when one fails (on torch 2.1, gloo's destroy_process_group hung now and then in
    # the rank that raised, once the other had left)


def test_a_process_that_fails_stops_the_others_instead_of_hanging_them(tmp_path, images):
    """With 2 processes, one whose forward raises: it raises its own error, the other raises one
    naming it, both return (no collective left waiting), and no index is written."""
    import torch.multiprocessing as mp
    out = tmp_path / 'out'
    out.mkdir()
    context = mp.start_processes(_extract_and_fail_on_rank_1, nprocs=2, join=False,
                                 args=(str(images), str(out), str(tmp_path / 'rendezvous')),
                                 start_method='spawn')
    outcomes = [out / 'rank0.txt', out / 'rank1.txt']
    deadline = time.monotonic() + 180
    try:
        while not all(o.exists() for o in outcomes):
            assert time.monotonic() < deadline, 'the processes hang'
            time.sleep(0.5)
    finally:
        for process in context.processes:
            process.kill()
    assert (out / 'rank1.txt').read_text() == 'out of memory (made up)'
    assert (out / 'rank0.txt').read_text().startswith(
        'extraction failed in another process (process 1: RuntimeError: out of memory (made up))')
    assert not (out / 'index.json').exists()
