"""Registers :class:`SwinV2Backbone` with every OpenMMLab model registry that is installed.

mmengine's root registry always gets it; mmdet's, mmseg's and mmpretrain's get it when those
packages are installed, so ``type='SwinV2Backbone'`` builds under any ``default_scope``. The
backbone needs none of them: a host that is installed but does not import (mmdet refuses an
mmcv outside its range, say) is skipped with a warning that says why.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings

from mmengine.registry import MODELS

from .backbone import SwinV2Backbone

__all__ = ['register_all']

HOST_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')


def register_all() -> list[str]:
    """Register the backbone; return the scopes it was registered in."""
    scopes = []
    registries = [MODELS]
    for module in HOST_REGISTRIES:
        host = module.split('.')[0]
        if importlib.util.find_spec(host) is None:
            continue
        try:
            registries.append(importlib.import_module(module).MODELS)
        except Exception as e:  # noqa: BLE001 - the hosts raise ImportError and AssertionError
            warnings.warn(f'{host} is installed but does not import ({type(e).__name__}: {e}); '
                          f'SwinV2Backbone is not registered with {host}', stacklevel=2)
    for registry in registries:
        # force: re-importing (e.g. importlib.reload in a notebook) must not raise
        registry.register_module('SwinV2Backbone', module=SwinV2Backbone, force=True)
        scopes.append(registry.scope)
    return scopes
