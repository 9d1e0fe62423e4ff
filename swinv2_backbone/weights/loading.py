"""Reading, writing and loading SwinV2 checkpoints of every layout, with a loud report.

``load_pretrained`` is what ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` runs:
read the file (``.pth``/``.bin``/``.safetensors``, or an HF model directory), detect its layout,
map it to ours (:mod:`swinv2_backbone.weights.checkpoints`), adapt what depends on the target model
(absolute position embedding grid), then load. Missing learned weights, unexpected backbone weights
and shape mismatches raise; missing or unexpected output norms are reported and tolerated, since
a checkpoint carries at most the final one.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import convert_state_dict
from ..compat import load_weights_only
from .download import fetch, fetch_hf, is_hf, is_url
from ..files import atomic_write

__all__ = ['LoadReport', 'atomic_write', 'load_pretrained', 'read_checkpoint', 'save_checkpoint']

HF_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
            'pytorch_model.bin.index.json')


def _read_file(path: Path) -> dict:
    if path.suffix in ('.onnx', '.xml', '.engine', '.plan'):  # an exported model, no weights
        raise ValueError(f'{path} is an exported model (ONNX, OpenVINO or TensorRT), not a '
                         'checkpoint: give the .pth / .safetensors it was exported from')
    if path.suffix == '.json':  # a sharded HF index
        index = json.loads(path.read_text())
        out = {}
        for shard in sorted(set(index['weight_map'].values())):
            out.update(_read_file(path.parent / shard))
        return out
    if path.suffix == '.safetensors':
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ValueError(f'{path} is not a readable safetensors file '
                             f'(truncated or corrupt?): {e}') from e
    try:
        return load_weights_only(path)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # torch's loader: "Unsupported global: GLOBAL m.f is not allowed" or "Trying to load
        # unsupported GLOBAL m.f whose module m is blocked"; ours (torch < 2.6) the first
        refused = sorted(set(re.findall(r'GLOBAL ([\w.]+)', str(e))))
        if refused:
            raise ValueError(f'{path} holds Python objects besides tensors, which the safe '
                             f'loader refuses to create: {", ".join(refused)}. If you trust '
                             'the file, load it with load_pretrained(..., trust_file=True) or '
                             'convert it once with tools/convert_checkpoint.py --trust-file') from e
        raise ValueError(f'{path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
                         f'{lines[-2] if len(lines) > 1 else lines[0]}') from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f'{path} is not a readable PyTorch checkpoint (truncated or corrupt?): '
                         f'{e}') from e


def read_checkpoint(path: str | os.PathLike, trust_file: bool = False) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from a checkpoint file, an HF model directory, an
    ``http(s)://`` URL (downloaded once into torch.hub's cache) or an HF hub id
    (``hf://owner/name[@revision]``; :mod:`swinv2_backbone.weights.download`).

    Containers are unwrapped: ``state_dict`` (mmengine), ``model`` (official release),
    ``module``. ``trust_file`` allows arbitrary pickled objects (only for files you trust).

    Raises:
        FileNotFoundError: the path does not exist (or a directory holds no HF weights file).
        ValueError: the file is not a checkpoint, is truncated, or holds no tensors.
    """
    if is_url(path):
        file = fetch(path)
        try:
            return read_checkpoint(file, trust_file)
        except ValueError as e:  # a cached file that does not read is not kept
            file.unlink(missing_ok=True)
            raise ValueError(f'{path}: the downloaded file does not read, and was removed from '
                             f'the cache: {e}') from e
    if is_hf(path):
        path = fetch_hf(path)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.is_dir():
        found = [path / f for f in HF_FILES if (path / f).exists()]
        if not found:
            raise FileNotFoundError(f'{path} is a directory without any of {", ".join(HF_FILES)}')
        path = found[0]
    if trust_file and path.suffix not in ('.safetensors', '.json'):
        obj = torch.load(path, map_location='cpu', weights_only=False)
    else:
        obj = _read_file(path)
    for key in ('state_dict', 'model', 'module'):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f'{path} holds no state dict (got {type(obj).__name__})')
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f'{path} holds no tensors; keys: {list(obj)[:5]}')
    return tensors


def save_checkpoint(state_dict: dict[str, torch.Tensor], path: str | os.PathLike,
                    meta: dict | None = None) -> None:
    """Write atomically (:func:`atomic_write`).

    ``.safetensors`` paths get a safetensors file (``meta`` as string metadata), others a
    ``torch.save`` of ``{'state_dict': ..., 'meta': ...}``.
    """
    if Path(path).suffix == '.safetensors':
        from safetensors.torch import save_file
        tensors = {k: v.contiguous() for k, v in state_dict.items()}
        atomic_write(path, lambda tmp: save_file(
            tensors, tmp, metadata={k: str(v) for k, v in (meta or {}).items()}))
    else:
        atomic_write(path, lambda tmp: torch.save({'state_dict': state_dict, 'meta': meta or {}},
                                                  tmp))


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', key)]


def _modules(keys: list[str]) -> str:
    """'stages.2.blocks.6, stages.2.blocks.7, ...': the modules that keys belong to."""
    groups: list[str] = []
    for k in sorted(keys, key=_natural):
        g = re.match(r'stages\.\d+\.(blocks\.\d+|downsample)|out_norms\.\w+|[^.]+', k).group(0)
        if g not in groups:
            groups.append(g)
    return ', '.join(groups)


@dataclass
class LoadReport:
    """What a load did: the layout found and every key that was not a one-to-one match."""
    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f'loaded {len(self.loaded)} tensors from {self.source} ({self.format} layout)']
        for name in ('dropped', 'resized', 'missing', 'unexpected'):
            keys = getattr(self, name)
            if keys:
                lines.append(f'{name} ({len(keys)}): {", ".join(keys)}')
        return '\n'.join(lines)


def _adapt(model: nn.Module, sd: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Resize the absolute position embedding to the model's grid."""
    pos = getattr(model, 'absolute_pos_embed', None)
    src = sd.get('absolute_pos_embed')
    if pos is not None and src is not None and src.shape != pos.shape:
        if src.shape[:2] == pos.shape[:2]:
            sd['absolute_pos_embed'] = F.interpolate(src.float(), size=pos.shape[2:],
                                                     mode='bicubic', align_corners=False)
            report.resized.append(f'absolute_pos_embed {tuple(src.shape)} -> {tuple(pos.shape)}')


def load_pretrained(model: nn.Module, checkpoint: str | os.PathLike | dict,
                    fmt: str = 'auto', prefix: str = '', strict: bool = True,
                    trust_file: bool = False, logger=None) -> LoadReport:
    """Load SwinV2 weights of any supported layout into ``model`` (a ``SwinV2Backbone``).

    Args:
        checkpoint: a path (file or HF directory) or a flat state dict.
        fmt: 'auto' or one of ``checkpoints.FORMATS``.
        prefix: keep only keys under this prefix (e.g. 'backbone.'), stripped.
        strict: raise when learned backbone weights are missing or unexpected (output norms
            are always allowed to differ: checkpoints hold at most the final one).
        logger: where the report goes (an mmengine ``MMLogger`` by default).

    Raises:
        ValueError: wrong layout, a shape mismatch (names the key and both shapes), or, with
            ``strict``, missing or unexpected backbone weights.
    """
    source = str(checkpoint) if not isinstance(checkpoint, dict) else '<state dict>'
    sd = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint, trust_file)
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise ValueError(f'{source} has no keys under prefix {prefix!r}')
    sd, dropped, fmt = convert_state_dict(sd, fmt)
    report = LoadReport(source=source, format=fmt, dropped=sorted(dropped))
    _adapt(model, sd, report)

    own = model.state_dict()
    if 'mask_token' in sd and 'mask_token' not in own:  # SimMIM's, for pretraining only
        del sd['mask_token']
        report.dropped.append('mask_token')
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        raise ValueError(f'{source}: {len(mismatched)} shape mismatches (is it another '
                         f'architecture?): ' + '; '.join(mismatched[:8]))
    report.missing = sorted((k for k in own if k not in sd), key=_natural)
    report.unexpected = sorted((k for k in sd if k not in own), key=_natural)
    report.loaded = sorted((k for k in sd if k in own), key=_natural)
    if strict:
        problems = []
        for name in ('missing', 'unexpected'):
            bad = [k for k in getattr(report, name) if not k.startswith('out_norms.')]
            if bad:
                problems.append(f'{len(bad)} backbone weights {name}, in {_modules(bad)}')
        if problems:
            raise ValueError(f'{source} ({fmt} layout) does not fit this model: '
                             + '; '.join(problems))
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)

    if logger is None:
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
    logger.info(report.summary())
    for name in ('missing', 'unexpected'):
        if getattr(report, name):
            logger.warning(f'{name} keys when loading {source}: {", ".join(getattr(report, name))}')
    return report
