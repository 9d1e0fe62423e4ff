#!/usr/bin/env python3
"""One idempotent set-up step: a virtualenv with the OpenMMLab stack and this package.

    python3 tools/setup_env.py [--env latest|oldest] [--venv DIR]

Run with any Python 3.11 (stdlib only). What users get is ``setup.cfg`` (ranges); the exact
versions of each development environment are ``constraints/<env>.txt``, applied to every pip
call here, so nothing installs outside them. Two environments are tested:

- ``latest``: the newest releases (``.venv``);
- ``oldest``: torch 2.1 and numpy 1.26, the prebuilt-mmcv era many users still train in
  (``.venv-oldest``).

Steps, each skipped when already done:
  1. create the virtualenv (``--venv`` puts it elsewhere);
  2. install torch, torchvision, numpy and setuptools from the constraints;
  3. install mmcv with its compiled CPU ops (``swinv2_backbone/install.py``, what users run as
     ``python -m swinv2_backbone.install mmcv``): no wheel exists for these Pythons and
     torches, so the source release is built once per torch version (about 15 minutes on 2
     cores) and the wheel is kept in ``~/.cache/swinv2_backbone/wheels/torch-<ver>-<python>``
     for later clones;
  4. install this package in editable mode with its extras ``mmdet,mmseg,tests,export,hub``, and
     mmdeploy without its dependencies (see ``DEPLOY``);
  5. write a stamp holding the hash of ``setup.cfg``, the constraints and this script: when it
     matches, a re-run returns at once.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = {'latest': ROOT / '.venv', 'oldest': ROOT / '.venv-oldest'}
EXTRAS = 'mmdet,mmseg,tests,export,hub,large'
# nncf 3.x needs torch >= 2.3: the int8 extra goes to the latest environment only
ENV_EXTRAS = {'latest': ',int8', 'oldest': ''}
# mmdeploy 1.3.1 (whole models through ONNX: swinv2_backbone.apps.deploy, tests/test_deploy.py) pins
# protobuf <= 3.20.2, which the onnx the export extra needs refuses; it runs beside the pinned
# protobuf and onnx, so it goes in without its dependencies, with the one it imports that
# nothing else here brings
DEPLOY = ('mmdeploy', 'aenum')


def log(msg: str) -> None:
    print(f'[setup {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(*args: str, **kw) -> None:
    subprocess.run(args, check=True, **kw)


class Venv:
    """A virtualenv and the constraints every pip call in it obeys."""

    def __init__(self, path: Path, constraints: Path) -> None:
        self.path = path
        self.python = path / 'bin' / 'python'
        self.constraints = constraints
        self.pins = read_pins(constraints)

    def pip(self, *args: str, constrained: bool = True, **kw) -> None:
        extra = ('-c', str(self.constraints)) if constrained else ()
        run(str(self.python), '-m', 'pip', '--disable-pip-version-check', '-q', *args, *extra,
            **kw)

    def probe(self, code: str) -> bool:
        return subprocess.run([str(self.python), '-c', code],
                              capture_output=True).returncode == 0


def read_pins(constraints: Path) -> dict[str, str]:
    """``{normalised name: version}`` from a constraints file of ``name==version`` lines."""
    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            name, version = line.split('==')
            pins[re.sub(r'[-_.]+', '-', name).lower()] = version
    return pins


def fingerprint(constraints: Path) -> str:
    h = hashlib.sha256()
    for f in (ROOT / 'setup.cfg', constraints, Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()


def install_mmcv(venv: Venv) -> bool:
    """mmcv with compiled ops, from the wheel cache or built (swinv2_backbone/install.py, what
    users run as ``python -m swinv2_backbone.install mmcv``); False if its ops do not load."""
    proc = subprocess.run([str(venv.python), str(ROOT / 'swinv2_backbone' / 'install.py'),
                           'mmcv', '--version', venv.pins['mmcv'],
                           f'--pip-arg=-c{venv.constraints}'])
    return proc.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--env', choices=sorted(ENVS), default='latest')
    parser.add_argument('--venv', type=Path,
                        help='default: .venv for latest, .venv-oldest for oldest')
    args = parser.parse_args(argv)
    start = time.time()
    path = args.venv or ENVS[args.env]
    constraints = ROOT / 'constraints' / f'{args.env}.txt'
    venv = Venv(path.absolute(), constraints)
    stamp = venv.path / '.swinv2-setup-stamp'
    fp = fingerprint(constraints)
    if venv.python.exists() and stamp.exists() and stamp.read_text() == fp:
        log(f'{args.env} environment in {venv.path} is up to date')
        return 0
    if not venv.python.exists():
        log(f'creating virtualenv {venv.path} ({args.env})')
        run(sys.executable, '-m', 'venv', str(venv.path))
    stamp.unlink(missing_ok=True)

    log(f'installing torch {venv.pins["torch"]}, torchvision {venv.pins["torchvision"]}, '
        f'numpy {venv.pins["numpy"]}')
    venv.pip('install', 'torch', 'torchvision', 'numpy', 'setuptools')
    if not install_mmcv(venv):
        log('mmcv was installed but its compiled ops do not load')
        return 1
    extras = EXTRAS + ENV_EXTRAS[args.env]
    log(f'installing swinv2_backbone (editable) with extras {extras}')
    venv.pip('install', '-e', f'{ROOT}[{extras}]')
    log(f'installing {", ".join(DEPLOY)} without dependencies')
    venv.pip('install', '--no-deps', *DEPLOY)
    stamp.write_text(fp)
    log(f'{args.env} environment ready in {time.time() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
