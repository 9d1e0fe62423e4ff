"""How the package is built, checked: a block reaches its attention logits in at most four
calls on every path; the import graph has no cycle (type-checking imports included); the
run-time and the kernels never read a model module."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import swinv2_backbone
from swinv2_backbone.kernels.reference import attention_logits
from swinv2_backbone.model.blocks import SwinV2Block
from swinv2_backbone.ops import shift_attn_mask
from swinv2_backbone.runtime.execution import Execution

from devkit.testing import randomize_

PACKAGE = Path(swinv2_backbone.__file__).parent
PATHS = {
    'reference': Execution('reference', grad=True),
    'export': Execution('reference', exporting=True),
    'cpu': Execution('cpu', grad=True),
    'cpu inference': Execution('cpu'),
    'batched': Execution('batched', grad=True),
    'batched inference': Execution('batched'),
}


def _calls_to_logits(block: SwinV2Block, x: torch.Tensor, mask, execution) -> list[int]:
    """For each time the logits are computed in ``block(x, ...)``: the calls from
    SwinV2Block.forward to there, counting the package's functions on the way and the
    function that computes them (``attention_logits``, or PyTorch's SDPA)."""
    depths = []

    def profile(frame, event, arg):
        sdpa = event == 'c_call' and arg is F.scaled_dot_product_attention
        if not (sdpa or event == 'call' and frame.f_code is attention_logits.__code__):
            return
        calls, f = int(sdpa), frame
        while f.f_code is not SwinV2Block.forward.__code__:
            calls += f.f_code.co_filename.startswith(str(PACKAGE))
            f = f.f_back
        depths.append(calls)
    sys.setprofile(profile)
    try:
        block(x, 4, mask, execution)
    finally:
        sys.setprofile(None)
    return depths


@pytest.mark.parametrize('path', list(PATHS))
@pytest.mark.parametrize('shifted', [False, True], ids=['plain', 'shifted'])
def test_a_block_reaches_its_logits_in_at_most_four_calls(path, shifted):
    execution = PATHS[path]
    block = randomize_(SwinV2Block(32, 2, 4, shifted=shifted)).train(execution.grad)
    x = torch.randn(2, 4 * 16, 32, requires_grad=execution.grad)  # 4 windows of 4 x 4
    mask = shift_attn_mask(8, 8, 4, 2) if shifted else None
    with torch.set_grad_enabled(execution.grad):
        depths = _calls_to_logits(block, x, mask, execution)
    assert depths and max(depths) <= 4, depths


def _modules() -> dict[str, Path]:
    return {'.'.join(('swinv2_backbone',) + p.relative_to(PACKAGE).with_suffix('').parts)
            .removesuffix('.__init__'): p for p in PACKAGE.rglob('*.py')}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports anywhere in its file (under TYPE_CHECKING and
    inside functions too)."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition('.')[0]
            base = f'{base}.{node.module}' if node.level and node.module else \
                (base if node.level else node.module)
            for a in node.names:  # a submodule by that name, else the module itself
                found.add(f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base)
    return {m for m in found if m in modules and m != name}


def test_the_package_import_graph_has_no_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                raise AssertionError(' -> '.join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'
    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert 'swinv2_backbone.kernels.cpu' in graph  # the walk saw the package


def test_the_runtime_and_kernels_never_read_a_model_module():
    """They take tensors and plain values: no torch.nn modules, no model imports, no
    ``.parameters()``, ``.modules()`` or ``.training`` of anything."""
    for folder in ('runtime', 'kernels'):
        for path in (PACKAGE / folder).glob('*.py'):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    names = {node.module or ''} | {a.name for a in node.names}
                    assert not {'nn', 'model'} & {n.split('.')[-1] for n in names} \
                        and not (node.module or '').startswith(('torch.nn.modules', 'model')), \
                        (path.name, ast.unparse(node))
                if isinstance(node, ast.Import):
                    assert all(a.name != 'torch.nn' for a in node.names), path.name
                if isinstance(node, ast.Attribute):
                    assert node.attr not in ('parameters', 'modules', 'training', 'children'), \
                        (path.name, ast.unparse(node))


def test_the_installed_package_never_imports_the_development_kit():
    """devkit/ (benchmarks, profilers, synthetic data) stays in the checkout."""
    for path in PACKAGE.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
                assert not any(n.split('.')[0] == 'devkit' for n in names), path
