"""The code passes the project's one lint config (setup.cfg [flake8])."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flake8_is_clean():
    run = subprocess.run([sys.executable, '-m', 'flake8', 'swinv2_backbone', 'devkit', 'tools',
                          'tests', 'configs'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _package_imports(path: Path) -> set[str]:
    """The modules of this package a file imports at run time, anywhere in it (relative
    imports resolved against swinv2_backbone/; ``if TYPE_CHECKING:`` blocks left out)."""
    import ast
    package = ['swinv2_backbone', *path.parent.relative_to(ROOT / 'swinv2_backbone').parts]
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, 'id', None) == 'TYPE_CHECKING':
            return
        if isinstance(node, ast.ImportFrom) and node.level:
            base = '.'.join(package[:len(package) - node.level + 1])
            if node.module:  # the module, and its names (which may be submodules)
                found.add(f'{base}.{node.module}')
                found.update(f'{base}.{node.module}.{a.name}' for a in node.names)
            else:  # from . import name
                found.update(f'{base}.{a.name}' for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found.update(n for n in names if n and n.startswith('swinv2_backbone'))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_the_probes_stand_alone_and_the_plan_is_plain_data():
    """hardware.py imports nothing of the package; runtime/execution.py (the plan) decides from
    the probes and the version checks only: the kernels import it, never the other way."""
    package = ROOT / 'swinv2_backbone'
    assert _package_imports(package / 'hardware.py') == set()
    imported = _package_imports(package / 'runtime' / 'execution.py')
    assert imported and all(m.startswith(('swinv2_backbone.hardware', 'swinv2_backbone.compat'))
                            for m in imported), imported


# The package's layers, bottom up, as swinv2_backbone/__init__.py describes them: a module may
# import its own layer and the layers before it, never one after it.
LAYERS = (('compat', 'files', 'hardware', 'install', 'ops', 'version'), ('runtime',), ('kernels',),
          ('weights',), ('model',), ('apps',), ('hosts',))


def _layer(module: str) -> int:
    """The layer of a dotted module name inside the package. The package itself, the public
    API, stands with the hosts: importing it registers the backbone with them."""
    parts = module.split('.')
    if len(parts) == 1:
        parts.append('hosts')
    found = [i for i, names in enumerate(LAYERS) if parts[1] in names]
    assert found, f'{module} is in no layer: add it to LAYERS and the package docstring'
    return found[0]


def test_every_module_imports_only_its_layer_and_those_below():
    package = ROOT / 'swinv2_backbone'
    checked = 0
    for path in sorted(package.rglob('*.py')):
        parts = path.relative_to(package).with_suffix('').parts
        # a package's __init__ is the package: swinv2_backbone itself stands with the hosts
        dotted = '.'.join(('swinv2_backbone', *parts)).removesuffix('.__init__')
        own = _layer(dotted)
        # a `from x import name` also yields x.name, which may be a function, not a module
        imported = {m for m in _package_imports(path)
                    if (package / Path(*m.split('.')[1:])).exists()
                    or (package / Path(*m.split('.')[1:])).with_suffix('.py').exists()}
        above = sorted(m for m in imported if _layer(m) > own)
        assert not above, f'{dotted} imports {above}, a layer above its own'
        checked += 1
    assert checked > 30
