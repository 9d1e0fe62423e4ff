"""Registers :class:`SwinV2Backbone` (and :class:`SwinV2Exported`, an exported file run as a
backbone) with every OpenMMLab model registry that is installed.

mmengine's root registry always gets it; mmdet's, mmseg's and mmpretrain's get it when those
packages are installed, so ``type='SwinV2Backbone'`` builds under any ``default_scope``; when
mmdeploy is installed, the export rewrites of :mod:`swinv2_backbone.apps.deploy` are registered with
it. The backbone needs none of them: a host that is installed but does not import (mmdet refuses
an mmcv outside its range, say) is skipped with a warning that says why.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings

from mmengine.registry import MODELS

from ..model.backbone import SwinV2Backbone
from .exported import SwinV2Exported

__all__ = ['register_all']

HOST_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')


def _import_host(module: str, what: str, host: str | None = None):
    """``module`` imported, or None when ``host`` (its package by default) is not installed or
    does not import."""
    host = host or module.split('.')[0]
    if importlib.util.find_spec(host) is None:
        return None
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - the hosts raise ImportError and AssertionError
        warnings.warn(f'{host} is installed but does not import ({type(e).__name__}: {e}); '
                      f'{what} not registered with {host}', stacklevel=3)
        return None


def register_all() -> list[str]:
    """Register the backbone and the mmdeploy rewrites; return the scopes of the backbone."""
    scopes = []
    registries = [MODELS]
    for module in HOST_REGISTRIES:
        host = _import_host(module, 'SwinV2Backbone is')
        if host is not None:
            registries.append(host.MODELS)
    _import_host('swinv2_backbone.apps.deploy', 'the export rewrites are', host='mmdeploy')
    for registry in registries:
        # force: re-importing (e.g. importlib.reload in a notebook) must not raise
        registry.register_module('SwinV2Backbone', module=SwinV2Backbone, force=True)
        registry.register_module('SwinV2Exported', module=SwinV2Exported, force=True)
        scopes.append(registry.scope)
    return scopes
