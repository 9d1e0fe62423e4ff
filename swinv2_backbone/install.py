"""Install mmcv with its compiled ops into the active environment, whatever its torch.

    python -m swinv2_backbone.install mmcv [--version 2.1.0] [--cuda] [--rebuild]

OpenMMLab publishes mmcv wheels for torch <= 2.1 only; with a newer torch pip falls back to the
source release, whose build fails in a fresh environment (its setup.py needs setuptools < 70
and the torch already installed, and torch >= 2.4's headers need C++20). This builds that
release the way that works:

1. ``setuptools<70``, ``wheel`` and ``ninja`` into the environment (its own setuptools is put
   back afterwards);
2. the source release, ``-std=c++17`` raised to ``c++20`` for torch >= 2.4, built without
   build isolation against the installed torch, ``MMCV_WITH_OPS=1``, CPU ops unless ``--cuda``
   (which needs the CUDA toolkit of the torch build: ``nvcc``, ``CUDA_HOME``);
3. the wheel kept in ``~/.cache/swinv2_backbone/wheels/torch-<version>-py<XY>[-cuda]`` and
   installed; a later run with the same torch and Python installs it again without building.

Standard library only: ``tools/setup_env.py`` runs this file with the interpreter of the
environment it sets up.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'swinv2_backbone'
MMCV_VERSION = '2.1.0'  # the newest mmcv that mmdet 3.x and mmseg 1.x accept (< 2.2)
# mmcv 2.1.0's setup.py uses pkg_resources and setuptools APIs that 70 removed
BUILD_SETUPTOOLS = 'setuptools<70'
PROBE = 'import mmcv, mmcv.ops; print(mmcv.__version__)'


def log(msg: str) -> None:
    print(f'[install {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def cxx_standard(torch_version: str) -> str:
    """The C++ standard torch's headers need: c++20 from torch 2.4, else mmcv's c++17."""
    major, minor = (int(v) for v in torch_version.split('+')[0].split('.')[:2])
    return 'c++20' if (major, minor) >= (2, 4) else 'c++17'


def _python(code: str, python: str) -> str | None:
    proc = subprocess.run([python, '-c', code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pip(python: str, *args: str, **kw) -> None:
    subprocess.run([python, '-m', 'pip', '--disable-pip-version-check', '-q', *args], check=True,
                   **kw)


def wheel_dir(torch_version: str, python_tag: str, cuda: bool) -> Path:
    """Where the wheel built against ``torch_version`` for ``python_tag`` ('py311') is kept."""
    return CACHE / 'wheels' / (f'torch-{torch_version}-{python_tag}' + ('-cuda' if cuda else ''))


def build_wheel(python: str, version: str, torch_version: str, out_dir: Path,
                cuda: bool = False) -> Path:
    """Build mmcv ``version`` with its ops from the source release against the torch that
    ``python`` has; the wheel is written into ``out_dir`` atomically."""
    std = cxx_standard(torch_version)
    before = _python('import setuptools; print(setuptools.__version__)', python)
    with tempfile.TemporaryDirectory(prefix='mmcv-build-') as tmp:
        tmp = Path(tmp)
        log(f'building mmcv {version} with {"CUDA" if cuda else "CPU"} ops against torch '
            f'{torch_version} ({std}); about 15 minutes on 2 cores')
        _pip(python, 'install', BUILD_SETUPTOOLS, 'wheel', 'ninja')
        try:
            _pip(python, 'download', '--no-deps', '--no-build-isolation', '--no-binary', ':all:',
                 f'mmcv=={version}', '-d', str(tmp))
            with tarfile.open(next(tmp.glob('mmcv-*.tar.gz'))) as tar:
                tar.extractall(tmp, filter='data')
            src = tmp / f'mmcv-{version}'
            setup_py = src / 'setup.py'
            setup_py.write_text(setup_py.read_text().replace("'-std=c++17'", f"'-std={std}'"))
            # -g0: Python's build flags ask for debug info, which doubles the compile time of
            # every file against torch's headers
            env = dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='1' if cuda else '0',
                       MAX_JOBS=str(os.cpu_count()),
                       CFLAGS=f'{os.environ.get("CFLAGS", "")} -g0'.strip())
            built = tmp / 'wheel'
            _pip(python, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(built), str(src),
                 env=env)
        finally:
            if before:
                _pip(python, 'install', f'setuptools=={before}')
        wheel = next(built.glob('mmcv-*.whl'))
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / wheel.name
        shutil.copy(wheel, final.with_suffix('.part'))
        os.replace(final.with_suffix('.part'), final)  # a killed build leaves no wheel
        return final


def install_mmcv(python: str = sys.executable, version: str = MMCV_VERSION, cuda: bool = False,
                 rebuild: bool = False, pip_args: tuple[str, ...] = ()) -> bool:
    """mmcv ``version`` with its compiled ops in the environment of ``python``: kept as it is
    when its ops load, else from the wheel cache, else built. False if the ops do not load.
    ``pip_args``: added to the final ``pip install`` (``-c constraints.txt``)."""
    if not rebuild and _python(PROBE, python) == version:
        log(f'mmcv {version} with its ops is installed already')
        return True
    torch_version = _python('import torch; print(torch.__version__.split("+")[0])', python)
    if torch_version is None:
        raise SystemExit('error: torch does not import in this environment; install torch '
                         'first (CPU only: pip install torch --index-url '
                         'https://download.pytorch.org/whl/cpu)')
    tag = _python('import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")', python)
    cache = wheel_dir(torch_version, tag, cuda)
    wheels = sorted(cache.glob(f'mmcv-{version}-*.whl'))
    if wheels and not rebuild:
        wheel = wheels[-1]
        log(f'installing the wheel built before: {wheel}')
    else:
        wheel = build_wheel(python, version, torch_version, cache, cuda)
    _pip(python, 'install', str(wheel), *pip_args)
    got = _python(PROBE, python)
    if got != version:
        log(f'mmcv {version} was installed but its ops do not load')
        return False
    log(f'mmcv {version} with its {"CUDA" if cuda else "CPU"} ops installed for torch '
        f'{torch_version}')
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m swinv2_backbone.install',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('package', choices=['mmcv'])
    parser.add_argument('--version', default=MMCV_VERSION, help='default %(default)s')
    parser.add_argument('--cuda', action='store_true',
                        help='build the CUDA ops too (needs nvcc matching the torch build)')
    parser.add_argument('--rebuild', action='store_true',
                        help='build again even when installed or cached')
    parser.add_argument('--python', default=sys.executable,
                        help='the environment to install into (default: this one)')
    parser.add_argument('--pip-arg', action='append', default=[],
                        help='extra argument for the final pip install (repeatable)')
    args = parser.parse_args(argv)
    ok = install_mmcv(args.python, args.version, args.cuda, args.rebuild, tuple(args.pip_arg))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
