"""Host-library compatibility with torch >= 2.6, where ``torch.load`` defaults to weights_only.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; its own checkpoints hold a
``HistoryBuffer`` (whose statistic methods are pickled as ``getattr(HistoryBuffer, 'min')``)
and numpy arrays and scalars in ``meta.message_hub``, so ``--resume`` fails with "Unsupported
global". Allow-listing exactly those types keeps the safe loader and makes resume work:
``getattr`` itself is not allowed, only a stand-in that resolves HistoryBuffer's statistics.
"""
from __future__ import annotations

import pickle

import numpy as np
import torch

__all__ = ['allow_mmengine_checkpoints']

_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: type, name: str):
    """What the pickle's ``getattr(HistoryBuffer, name)`` needs, and nothing else."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if owner is HistoryBuffer and name in _STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'weights-only load refuses getattr({owner!r}, {name!r})')


def allow_mmengine_checkpoints() -> None:
    """Allow the globals mmengine checkpoints contain in weights-only ``torch.load``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray  # numpy >= 2 pickles arrays through numpy._core
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    torch.serialization.add_safe_globals(
        [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
         *dtype_classes, (_history_buffer_statistic, 'builtins.getattr')])
