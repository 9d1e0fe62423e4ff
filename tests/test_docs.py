"""What README.md and docs/ name exists: files, functions and configs, the contents' anchors
and pictures, and every ``python tools/...`` command parses its arguments."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
# a backticked path under one of these is a file of the repository
PLACES = ('swinv2_backbone/', 'tools/', 'configs/', 'docs/', 'tests/', 'constraints/')
TOP_FILES = ('README.md', 'BENCHMARKS.md', 'Makefile', 'setup.cfg', 'LICENSE', 'setup.py')


def _text() -> str:
    return '\n'.join(p.read_text() for p in DOCS)


def _spans(text: str) -> list[str]:
    """Backticked spans outside fenced blocks."""
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    return re.findall(r'`([^`\n]+)`', prose)


def _expand(pattern: str) -> list[str]:
    """``a-{t,s}.py`` -> ``a-t.py``, ``a-s.py``."""
    parts = re.split(r'\{([^{}]*)\}', pattern)
    choices = [[p] if i % 2 == 0 else p.split(',') for i, p in enumerate(parts)]
    return [''.join(c) for c in itertools.product(*choices)]


def _paths() -> list[str]:
    names = set()
    for span in _spans(_text()):
        for word in span.split(', '):
            if ' ' not in word and (word.startswith(PLACES) or word in TOP_FILES):
                names.add(word)
    return sorted(names)


# the package's modules, which the docs also name without the package, by their path in it
# (``kernels.onednn.linear``) or their file's stem (``ops.window_order``, ``execution.decide``):
# each maps to its dotted path in the package
PACKAGE = ROOT / 'swinv2_backbone'
MODULES = {name: '.'.join(p.relative_to(PACKAGE).with_suffix('').parts)
           for p in PACKAGE.rglob('*.py') if p.stem != '__init__'
           for name in (p.stem, '.'.join(p.relative_to(PACKAGE).with_suffix('').parts))}
EXTENSIONS = {'py', 'md', 'sh', 'txt', 'json', 'png', 'pth', 'onnx', 'cfg', 'safetensors'}


def _dotted() -> list[str]:
    """``swinv2_backbone.x.y`` and ``x.y`` for a module ``x`` of the package, as full names."""
    names = set()
    longest_first = sorted(MODULES, key=len, reverse=True)
    short = re.compile(rf"(?<![\w./-])({'|'.join(map(re.escape, longest_first))})((?:\.\w+)+)")
    for span in _spans(_text()):
        for m in re.finditer(r'\bswinv2_backbone(?:\.\w+)+', span):
            names.add(m.group(0))
        for m in short.finditer(span):
            if m.group(0).rsplit('.', 1)[1] not in EXTENSIONS:
                names.add(f'swinv2_backbone.{MODULES[m.group(1)]}{m.group(2)}')
    return sorted(n for n in names if n.rsplit('.', 1)[1] not in EXTENSIONS)


def _commands() -> list[list[str]]:
    """The ``python tools/X.py ...`` lines of the bash blocks, continuations joined and
    comments dropped."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', _text(), flags=re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ['python'] and words[1].startswith('tools/'):
                commands.append(words[1:])
    return commands


def test_the_docs_name_things_at_all():
    """The collectors find what the README is known to name (they would pass vacuously)."""
    assert 'swinv2_backbone/apps/deploy.py' in _paths()
    assert 'swinv2_backbone.apps.deploy.export_model' in _dotted()
    assert ['tools/get_flops.py',
            'configs/mmseg/upernet_swinv2-t-w16_8xb2-160k_ade20k-512x512.py'] in _commands()
    assert len(_paths()) > 40 and len(_dotted()) > 5 and len(_commands()) > 10, (
        len(_paths()), len(_dotted()), len(_commands()))


@pytest.mark.parametrize('name', _paths())
def test_named_file_exists(name):
    found = [p for pattern in _expand(name) for p in ROOT.glob(pattern)]
    assert found, f'README/docs name {name!r}, which does not exist'


@pytest.mark.parametrize('name', _dotted())
def test_named_function_exists(name):
    parts = name.split('.')
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f'README/docs name {name!r}: no {attr!r}'
            obj = getattr(obj, attr)
        return
    pytest.fail(f'README/docs name {name!r}, which does not import')


def test_contents_links_and_pictures_resolve():
    text = (ROOT / 'README.md').read_text()
    anchors = {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-')
               for h in re.findall(r'^#+ (.+)$', text, flags=re.M)}
    for target in re.findall(r'\]\(#([^)]+)\)', text):
        assert target in anchors, f'contents link #{target} has no heading'
    for doc in DOCS:
        for target in re.findall(r'\]\(([^)#:]+)\)', doc.read_text()):
            assert (doc.parent / target).exists() or (ROOT / target).exists(), target


class _Parsed(Exception):
    pass


@pytest.mark.parametrize('command', _commands(), ids=lambda c: ' '.join(c)[:80])
def test_named_command_parses_its_arguments(command, monkeypatch):
    """The tool's own parser accepts the command as written (nothing runs: parsing stops it)."""
    parse = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_only)
    path = ROOT / command[0]
    monkeypatch.syspath_prepend(str(path.parent))  # as running the script puts its folder first
    spec = importlib.util.spec_from_file_location(f'readme_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(_Parsed):
        module.main(command[1:])


# how the product was built is not the users' business: shipped text gives dates, machines and
# commands, never the work log's units, tracker numbers or notes. The words are spelt in pieces
# so that this file passes the rule too; an ONNX Runtime InferenceSession is code, not prose.
WORK, TRACKER, NOTE = 'sess' + 'ion', 'iss' + 'ue', 'clos' + 'ing note'
BUILD_TALK = re.compile(rf"\b({WORK}s?\b(?! *[=.(\[])|{TRACKER}s? #?\d+|{TRACKER}'s|{NOTE})",
                        re.IGNORECASE)
# identifiers: a variable assigned or called, InferenceSession, _x_session
CODE_NAMES = re.compile(rf'\w*{WORK}\w*(?=[.(\[ ]*[=.(\[])|\w+{WORK.title()}\w*|_{WORK}\w*')
SHIPPED = ('.py', '.md', '.sh', '.txt', '.cfg', '.toml', '.yml', '.yaml')


def test_nothing_shipped_speaks_of_how_it_was_built():
    import subprocess
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        if not (name.endswith(SHIPPED) or name == 'Makefile') or not (ROOT / name).is_file():
            continue
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if BUILD_TALK.search(CODE_NAMES.sub('', line)):
                found.append(f'{name}:{number}: {line.strip()[:100]}')
    assert not found, '\n'.join(found)


# a measurement: a CPU or GPU model, a timing, a throughput, a date
MEASUREMENT = re.compile(r'\b(Xeon|EPYC|H100|H200|A100)\b|GFLOP|\d ?ms\b|\b20\d\d-\d\d-\d\d\b')


def test_the_package_holds_no_measurements():
    """Docstrings and comments of the library say what and why; numbers measured on a machine
    live in BENCHMARKS.md, with the date, the machine and the command."""
    found = [f'{path.relative_to(ROOT)}:{i}: {line.strip()}'
             for path in sorted((ROOT / 'swinv2_backbone').rglob('*.py'))
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if MEASUREMENT.search(line)]
    assert not found, '\n'.join(found)
