"""The code passes the project's one lint config (setup.cfg [flake8])."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flake8_is_clean():
    run = subprocess.run([sys.executable, '-m', 'flake8', 'swinv2_backbone', 'tools', 'tests',
                          'configs'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
