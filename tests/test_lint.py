"""The code passes the project's one lint config (setup.cfg [flake8])."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flake8_is_clean():
    run = subprocess.run([sys.executable, '-m', 'flake8', 'swinv2_backbone', 'tools', 'tests',
                          'configs'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _package_imports(path: Path) -> set[str]:
    """The modules of this package a file imports, anywhere in it (relative imports resolved
    against swinv2_backbone/)."""
    import ast
    package = ['swinv2_backbone', *path.parent.relative_to(ROOT / 'swinv2_backbone').parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = '.'.join(package[:len(package) - node.level + 1])
            if node.module:
                found.add(f'{base}.{node.module}')
            else:  # from . import name
                found.update(f'{base}.{a.name}' for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found.update(n for n in names if n and n.startswith('swinv2_backbone'))
    return found


def test_hardware_probes_import_nothing_of_the_package_and_execution_no_kernels():
    """The probes (hardware.py) stand alone; execution.py decides from them without importing
    the kernels, which import it (no import loop hidden inside a function)."""
    package = ROOT / 'swinv2_backbone'
    assert _package_imports(package / 'hardware.py') == set()
    imported = _package_imports(package / 'execution.py')
    assert 'swinv2_backbone.hardware' in imported
    assert not any(m.startswith('swinv2_backbone.kernels') for m in imported), imported
    assert 'swinv2_backbone.execution' in _package_imports(package / 'kernels' / 'onednn.py')
