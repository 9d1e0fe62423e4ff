#!/usr/bin/env python3
"""One idempotent set-up step: a virtualenv with the whole OpenMMLab stack and this package.

Run with any Python 3.11 (stdlib only). Pins are read from ``setup.cfg``; nothing is pinned here.

Steps, each skipped when already done:
  1. create the virtualenv (``.venv`` beside this repo, or ``$SWINV2_VENV``);
  2. install the pinned torch and torchvision;
  3. install mmcv with its compiled CPU ops. No wheel exists for this Python and torch, so the
     source release is patched (``-std=c++17`` -> ``-std=c++20``, which torch >= 2.10 headers
     need) and built once; the wheel is kept in ``~/.cache/swinv2_backbone/wheels/torch-<ver>``
     so another clone on the same machine installs it without compiling;
  4. install this package in editable mode with all extras;
  5. write a stamp holding the hash of ``setup.cfg`` and this script: when it matches, a re-run
     returns at once.
"""
from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get('SWINV2_VENV', ROOT / '.venv'))
CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'swinv2_backbone'
STAMP = VENV / '.swinv2-setup-stamp'
PY = VENV / 'bin' / 'python'


def log(msg: str) -> None:
    print(f'[setup {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(*args: str, **kw) -> None:
    subprocess.run(args, check=True, **kw)


def pip(*args: str, **kw) -> None:
    run(str(PY), '-m', 'pip', '--disable-pip-version-check', '-q', *args, **kw)


def write_constraints(pins: dict[str, str]) -> Path:
    """Every pin as a pip constraints file, so no install step can drift from setup.cfg."""
    path = VENV / 'swinv2-constraints.txt'
    path.write_text('\n'.join(pins.values()) + '\n')
    return path


def read_pins() -> tuple[dict[str, str], list[str]]:
    """Return ``({name: requirement}, [extras])`` from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    reqs = cfg['options']['install_requires'].split()
    for extra in cfg['options.extras_require'].values():
        reqs += extra.split()
    pins = {re.split(r'[=<>!~ ]', r, maxsplit=1)[0].lower(): r for r in reqs}
    return pins, list(cfg['options.extras_require'])


def fingerprint() -> str:
    h = hashlib.sha256()
    for f in (ROOT / 'setup.cfg', Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()


def mmcv_ok(version: str) -> bool:
    """True if the venv's mmcv is ``version`` and its compiled ops load."""
    probe = f'import mmcv, mmcv.ops; assert mmcv.__version__ == {version!r}'
    return subprocess.run([str(PY), '-c', probe], capture_output=True).returncode == 0


def build_mmcv_wheel(version: str, wheel_dir: Path, setuptools_pin: str) -> Path:
    """Build mmcv ``version`` with CPU ops from its source release into ``wheel_dir``."""
    with tempfile.TemporaryDirectory(prefix='mmcv-build-') as tmp:
        tmp = Path(tmp)
        log(f'building mmcv {version} with CPU ops from source (about 10 minutes on 2 cores)')
        # mmcv's build needs setuptools < 70; torch wants >= 77 at run time, so setuptools is
        # pinned low only for the build and put back to the pin from setup.cfg after.
        pip('install', 'setuptools<70', 'wheel', 'ninja')
        pip('download', '--no-deps', '--no-build-isolation', '--no-binary', ':all:',
            f'mmcv=={version}', '-d', str(tmp))
        with tarfile.open(next(tmp.glob('mmcv-*.tar.gz'))) as tar:
            tar.extractall(tmp, filter='data')
        src = tmp / f'mmcv-{version}'
        setup_py = src / 'setup.py'
        setup_py.write_text(setup_py.read_text().replace("'-std=c++17'", "'-std=c++20'"))
        env = dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='0', MAX_JOBS=str(os.cpu_count()))
        out = tmp / 'wheel'
        try:
            pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(out), str(src), env=env)
        finally:
            pip('install', setuptools_pin)
        wheel = next(out.glob('mmcv-*.whl'))
        wheel_dir.mkdir(parents=True, exist_ok=True)
        final = wheel_dir / wheel.name
        shutil.copy(wheel, final.with_suffix('.part'))
        os.replace(final.with_suffix('.part'), final)  # atomic: a killed build leaves no wheel
        return final


def main() -> int:
    start = time.time()
    fp = fingerprint()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == fp:
        log(f'environment in {VENV} is up to date')
        return 0
    pins, extras = read_pins()
    if not PY.exists():
        log(f'creating virtualenv {VENV}')
        run(sys.executable, '-m', 'venv', str(VENV))
    STAMP.unlink(missing_ok=True)

    constraints = write_constraints(pins)
    log(f'installing {pins["torch"]} {pins["torchvision"]}')
    pip('install', '-c', str(constraints), pins['torch'], pins['torchvision'])

    mmcv_version = pins['mmcv'].split('==')[1]
    if not mmcv_ok(mmcv_version):
        torch_version = pins['torch'].split('==')[1]
        wheel_dir = CACHE / 'wheels' / f'torch-{torch_version}'
        wheels = sorted(wheel_dir.glob(f'mmcv-{mmcv_version}-*.whl'))
        if wheels:
            log(f'installing cached {wheels[-1]}')
            wheel = wheels[-1]
        else:
            wheel = build_mmcv_wheel(mmcv_version, wheel_dir, pins['setuptools'])
        pip('install', '-c', str(constraints), str(wheel))
        if not mmcv_ok(mmcv_version):
            log('mmcv was installed but its compiled ops do not load')
            return 1

    log(f'installing swinv2_backbone (editable) with extras {",".join(extras)}')
    pip('install', '-c', str(constraints), '-e', f'{ROOT}[{",".join(extras)}]')
    STAMP.write_text(fp)
    log(f'done in {time.time() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
