"""Imported first by the tools that use the development kit: puts the checkout's root on
``sys.path``, so ``devkit/`` (beside ``tools/``, not installed with the package) imports."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
