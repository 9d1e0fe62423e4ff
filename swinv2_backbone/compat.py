"""Every difference between the torch and numpy releases we support, decided once, here.

Supported: torch >= 2.1 and numpy 1.26 or 2.x (the README's support table says which releases
are tested). The rest of the package calls the names below and never checks a version itself.

- Autocast queries. torch >= 2.4 takes a device type (``torch.is_autocast_enabled('cpu')``,
  ``torch.get_autocast_dtype``, ``torch.amp.is_autocast_available``); before, there was one
  function per device.
- ``is_compiling``: ``torch.compiler.is_compiling`` from torch 2.3, ``torch._dynamo``'s before.
- ``is_exporting``: a graph is recorded for another runtime. The ONNX exporters (TorchScript's and
  dynamo's) say so through ``torch.onnx.is_in_onnx_export``, ``torch.jit.trace`` through
  ``torch.jit.is_tracing``, ``torch.export`` through the flag ``torch.compiler.is_exporting``
  returns (read directly, see :func:`_torch_export_running`), where there is one:
  ``TORCH_EXPORT_SEEN`` (torch 2.6 has none).
- ``TORCHSCRIPT_EXPORT``: the keywords of ``torch.onnx.export`` that pick the TorchScript
  exporter. ``dynamo`` exists from torch 2.5 and defaults to True from 2.9; before 2.5 the
  TorchScript exporter is the only one and the keyword does not exist.
- ``CPU_HALF``: the CPU runs float16 convolutions (torch 2.1 does not), which the TorchScript
  ONNX exporter needs to trace a half model on the CPU; probed once.
- Weights-only ``torch.load``, the default from torch 2.6. mmengine 0.10.7 calls ``torch.load``
  without ``weights_only``; its checkpoints hold a ``HistoryBuffer`` (whose statistic methods
  are pickled as ``getattr(HistoryBuffer, 'min')``) and numpy arrays and scalars in
  ``meta.message_hub``. From torch 2.6, :func:`allow_mmengine_checkpoints` allow-lists exactly
  those types (``torch.serialization.add_safe_globals``), so ``--resume`` works with the safe
  loader on. :func:`load_weights_only`, this package's own safe load, reads the same types on
  every torch: before 2.6 through an unpickler whose ``find_class`` allows only them and what
  torch's weights-only loader allows. ``getattr`` itself is never allowed, only a stand-in that
  resolves HistoryBuffer's statistics.
- numpy 2 pickles arrays through ``numpy._core.multiarray``, numpy 1 through
  ``numpy.core.multiarray``. Both spellings are allowed under either numpy, so a checkpoint
  saved in a numpy-1 environment resumes in a numpy-2 one and the other way round.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import pickle
import re
import types

import numpy as np
import torch

__all__ = ['AUTOCAST_DEVICES', 'NUMPY_VERSION', 'TORCH_VERSION', 'allow_mmengine_checkpoints',
           'CPU_HALF', 'TORCHSCRIPT_EXPORT', 'TORCH_EXPORT_SEEN', 'autocast_available',
           'autocast_dtype', 'autocast_enabled', 'is_compiling', 'is_exporting',
           'load_weights_only']


def _version(text: str) -> tuple[int, int]:
    major, minor = re.match(r'(\d+)\.(\d+)', text).groups()
    return int(major), int(minor)


TORCH_VERSION = _version(torch.__version__)
NUMPY_VERSION = _version(np.__version__)


# ---------------------------------------------------------------- autocast
def _has_autocast(device_type: str) -> bool:
    try:
        return torch.amp.is_autocast_available(device_type)
    except RuntimeError:  # a device type this build does not know
        return False


if TORCH_VERSION >= (2, 4):
    autocast_enabled = torch.is_autocast_enabled
    autocast_dtype = torch.get_autocast_dtype
    # decided at import: the query is a C builtin that some torch.compile versions cannot trace
    AUTOCAST_DEVICES = frozenset(d for d in ('cpu', 'cuda', 'xpu', 'hpu', 'mps', 'mtia', 'xla')
                                 if _has_autocast(d))
else:
    _PER_DEVICE = {
        'cpu': (torch.is_autocast_cpu_enabled, torch.get_autocast_cpu_dtype),
        'cuda': (torch.is_autocast_enabled, torch.get_autocast_gpu_dtype),
    }
    AUTOCAST_DEVICES = frozenset(_PER_DEVICE)

    def autocast_enabled(device_type: str) -> bool:
        """Whether autocast is on for ``device_type``."""
        return _PER_DEVICE[device_type][0]()

    def autocast_dtype(device_type: str) -> torch.dtype:
        """The dtype autocast casts to on ``device_type``."""
        return _PER_DEVICE[device_type][1]()


def autocast_available(device_type: str) -> bool:
    """Whether ``torch.autocast(device_type)`` may be entered."""
    return device_type in AUTOCAST_DEVICES


# ---------------------------------------------------------------- torch.compile
is_compiling = getattr(torch.compiler, 'is_compiling', None)
if is_compiling is None:  # torch < 2.3
    import torch._dynamo
    is_compiling = torch._dynamo.is_compiling


def _cpu_runs_half() -> bool:
    one = torch.ones(1, 1, 1, 1, dtype=torch.float16)
    try:
        torch.nn.functional.conv2d(one, one)
    except RuntimeError:  # "slow_conv2d_cpu" not implemented for 'Half'
        return False
    return True


CPU_HALF = _cpu_runs_half()


TORCH_EXPORT_SEEN = hasattr(torch.compiler, '_is_exporting_flag')


def _torch_export_running() -> bool:
    """``torch.compiler.is_exporting()``: the flag it returns, which ``torch.export`` sets.
    Read directly: torch 2.8's dynamo answered the call True in every ``torch.compile``
    (a constant it folded), which sent compiled forwards down the export path. Releases
    without the flag (``TORCH_EXPORT_SEEN`` False) cannot say."""
    return TORCH_EXPORT_SEEN and torch.compiler._is_exporting_flag


TORCHSCRIPT_EXPORT: dict = {'dynamo': False} if TORCH_VERSION >= (2, 5) else {}


def is_exporting() -> bool:
    """Whether this call is recorded into a graph for another runtime (ONNX, ``torch.export``,
    ``torch.jit.trace``), whose input sizes may differ from the example's."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or _torch_export_running()


# ---------------------------------------------------------------- weights-only torch.load
_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: type, name: str):
    """What the pickle's ``getattr(HistoryBuffer, name)`` needs, and nothing else."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if owner is HistoryBuffer and name in _STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'weights-only load refuses getattr({owner!r}, {name!r})')


def _mmengine_globals() -> dict[str, object]:
    """``{name a pickle uses: object}`` for everything mmengine checkpoints hold."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if NUMPY_VERSION >= (2, 0) else np.core.multiarray
    # protocol-2 pickles (torch.save's) hold bytes, numpy 1's array data among them, as
    # _codecs.encode(str, 'latin1'); torch's own weights-only loader allows it from 2.4
    allowed = {'builtins.getattr': _history_buffer_statistic, '_codecs.encode': codecs.encode}
    for obj in (HistoryBuffer, np.ndarray, np.dtype,
                *{type(np.dtype(t)) for t in np.sctypeDict.values()}):
        allowed[f'{obj.__module__}.{obj.__name__}'] = obj
    for name in ('_reconstruct', 'scalar'):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            allowed[f'{module}.{name}'] = getattr(multiarray, name)
    return allowed


if TORCH_VERSION >= (2, 6):
    def allow_mmengine_checkpoints() -> None:
        """Allow the globals mmengine checkpoints hold in weights-only ``torch.load``."""
        torch.serialization.add_safe_globals(
            [(obj, name) for name, obj in _mmengine_globals().items()])

    _SAFE_LOAD: dict = dict(weights_only=True)
else:
    def allow_mmengine_checkpoints() -> None:
        """Nothing to do: before torch 2.6, ``torch.load`` is not weights-only by default."""

    class _RestrictedUnpickler(pickle.Unpickler):
        """Resolves only the globals torch's weights-only loader allows, and mmengine's.

        torch < 2.6 takes no allow-list (before 2.4 its weights-only loader cannot even build
        a ``HistoryBuffer``), so this restricts ``find_class``, the way Python's pickle
        documentation restricts globals.
        """
        allowed: dict[str, object] = {}

        def find_class(self, module: str, name: str):
            from torch._weights_only_unpickler import _get_allowed_globals
            if not self.allowed:
                self.allowed.update(_mmengine_globals())
            # protocol-2 pickles name Python 2's modules (__builtin__.getattr), which pickle's
            # own find_class maps to Python 3's
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            full = f'{module}.{name}'
            allowed = _get_allowed_globals().get(full, self.allowed.get(full))
            if allowed is None:
                raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full} is not allowed '
                                             'by the weights-only load')
            return allowed

    _SAFE_LOAD = dict(weights_only=False, pickle_module=types.SimpleNamespace(
        __name__='swinv2_restricted_pickle', load=pickle.load, Unpickler=_RestrictedUnpickler))


def load_weights_only(path) -> object:
    """``torch.load`` to CPU that builds tensors, containers and the types of
    :func:`_mmengine_globals` only; anything else raises ``pickle.UnpicklingError`` naming the
    refused global ("Unsupported global")."""
    return torch.load(path, map_location='cpu', **_SAFE_LOAD)
