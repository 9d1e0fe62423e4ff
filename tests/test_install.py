"""Installing into environments users already have: pip keeps what is there, the backbone core
needs no mmcv, and the sdist and wheel install and run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# a torch for a fresh virtualenv: this release lies on the development machines' disk as a CPU
# build (elsewhere pip downloads it)
FRESH_TORCH = 'torch==2.13.0'

# what a user does with the core alone: build, run, save, load back, convert
CORE_SCRIPT = '''
import importlib.util, tempfile, os
import torch
import swinv2_backbone
from swinv2_backbone import SwinV2Backbone, convert_state_dict, load_pretrained, save_checkpoint
assert importlib.util.find_spec('mmcv') is None, 'mmcv is installed'
assert swinv2_backbone.__file__.find(os.environ['SOURCE']) < 0, swinv2_backbone.__file__
torch.manual_seed(0)
tiny = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)
model = SwinV2Backbone(**tiny).eval()
x = torch.randn(1, 3, 70, 90)
with torch.no_grad():
    outs = model(x)
assert [tuple(o.shape) for o in outs] == [(1, 16, 18, 23), (1, 32, 9, 12)], outs
path = os.path.join(tempfile.mkdtemp(), 'w.pth')
save_checkpoint(model.state_dict(), path)
other = SwinV2Backbone(**tiny).eval()
load_pretrained(other, path)
with torch.no_grad():
    again = other(x)
assert all(torch.equal(a, b) for a, b in zip(outs, again))
converted, dropped, fmt = convert_state_dict(model.state_dict())
assert fmt == 'ours' and not dropped and converted.keys() == model.state_dict().keys()
print('core ok', swinv2_backbone.__file__)
'''


def _run(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f'{" ".join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout


def _source_copy(dest: Path) -> Path:
    """The checkout's files (tracked and not ignored) copied to ``dest``: builds write into
    the source tree, and the checkout stays as it is."""
    files = _run('git', 'ls-files', '--cached', '--others', '--exclude-standard', cwd=ROOT)
    for name in files.splitlines():
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_resolving_pip_install_changes_nothing_this_environment_has(tmp_path):
    """``pip install .[mmdet,mmseg]`` into this set-up environment installs this package and
    nothing else: torch, numpy, mmcv and the hosts stay the user's."""
    src = _source_copy(tmp_path / 'src')
    report = tmp_path / 'report.json'
    _run(sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet', '--report', str(report),
         f'{src}[mmdet,mmseg]')
    install = {item['metadata']['name']: item['metadata']['version']
               for item in json.loads(report.read_text())['install']}
    assert install == {'swinv2_backbone': '0.1.0'}


@pytest.mark.venv
def test_core_installs_and_runs_without_mmcv_from_source_wheel_and_sdist(tmp_path):
    """In a fresh virtualenv with torch and no mmcv: ``pip install .`` succeeds and the
    backbone runs; ``python -m build`` gives an sdist and a wheel that install and run too."""
    src = _source_copy(tmp_path / 'src')
    env_dir = tmp_path / 'venv'
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / 'bin' / 'python')
    pip = (py, '-m', 'pip', '--disable-pip-version-check', '-q')
    _run(*pip, 'install', FRESH_TORCH)
    run_env = {'PATH': '/usr/bin:/bin', 'SOURCE': str(src), 'HOME': str(Path.home())}
    script = tmp_path / 'core.py'
    script.write_text(CORE_SCRIPT)

    _run(*pip, 'install', str(src))
    assert 'core ok' in _run(py, str(script), cwd=tmp_path, env=run_env)
    # the tools with a config whose host is not installed: the pip line that fixes it, before
    # mmengine's resolution of 'mmdet::' fails (pkg_resources or "mmdet is not installed")
    det = src / 'configs' / 'mmdet' / 'mask-rcnn_swinv2-t-w16_fpn_1x_coco.py'
    seg = src / 'configs' / 'mmseg' / 'upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py'
    for tool, config, host, extra in (('train.py', det, 'mmdet', ()),
                                      ('test.py', det, 'mmdet', ('work/iter_1.pth',)),
                                      ('get_flops.py', det, 'mmdet', ()),
                                      ('train.py', seg, 'mmseg', ())):
        proc = subprocess.run([py, str(src / 'tools' / tool), str(config), *extra],
                              cwd=tmp_path, env=run_env, capture_output=True, text=True)
        assert proc.returncode == 2, (tool, proc.stdout[-2000:], proc.stderr[-2000:])
        assert f'this is an {host} config, but {host} does not import here' in proc.stderr
        assert f'pip install "swinv2_backbone[{host}]"' in proc.stderr, proc.stderr[-2000:]

    dist = tmp_path / 'dist'
    _run(sys.executable, '-m', 'build', '--outdir', str(dist), str(src))
    wheel, = dist.glob('swinv2_backbone-0.1.0-py3-none-any.whl')
    sdist, = dist.glob('swinv2_backbone-0.1.0.tar.gz')
    listing = _run(sys.executable, '-m', 'zipfile', '-l', str(wheel))
    assert 'swinv2_backbone/model/backbone.py' in listing and 'tests/' not in listing
    for package in (wheel, sdist):
        _run(*pip, 'install', '--force-reinstall', '--no-deps', str(package))
        assert 'core ok' in _run(py, str(script), cwd=tmp_path, env=run_env)


@pytest.mark.venv
def test_mmcv_installs_with_its_ops_in_one_command_into_a_fresh_environment(tmp_path):
    """``python -m swinv2_backbone.install mmcv`` in a fresh virtualenv with this torch: mmcv
    with compiled ops that run (NMS on the CPU). The wheel comes from the cache the set-up
    filled (the same module built it there: tools/setup_env.py runs it); a second run keeps it."""
    import torch
    src = _source_copy(tmp_path / 'src')
    env_dir = tmp_path / 'venv'
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / 'bin' / 'python')
    pip = (py, '-m', 'pip', '--disable-pip-version-check', '-q')
    _run(*pip, 'install', f'torch=={torch.__version__.split("+")[0]}')
    _run(*pip, 'install', str(src))
    run_env = {'PATH': '/usr/bin:/bin', 'HOME': str(Path.home())}
    out = _run(py, '-m', 'swinv2_backbone.install', 'mmcv', cwd=tmp_path, env=run_env)
    assert 'mmcv 2.1.0 with its CPU ops installed for torch' in out, out
    nms = ('import torch\nfrom mmcv.ops import nms\n'
           'boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])\n'
           'kept, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)\n'
           'assert keep.tolist() == [0, 2], keep\nprint("nms ok")\n')
    assert 'nms ok' in _run(py, '-c', nms, cwd=tmp_path, env=run_env)
    again = _run(py, '-m', 'swinv2_backbone.install', 'mmcv', cwd=tmp_path, env=run_env)
    assert 'is installed already' in again
