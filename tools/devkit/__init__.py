"""Code the tools and the tests share that is not part of the library, and is not installed
with it: the synthetic shapes dataset, the side-by-side benchmark, FLOP analysis and op counts.

``tools/*.py`` import it as ``devkit`` (their folder is first on ``sys.path``); the tests put
``tools/`` on ``sys.path`` in ``conftest.py``.
"""
