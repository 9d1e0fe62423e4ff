"""Registers :class:`SwinV2Backbone` with every OpenMMLab model registry that is installed.

mmengine's root registry always gets it; mmdet's, mmseg's and mmpretrain's get it when those
packages import, so ``type='SwinV2Backbone'`` builds under any ``default_scope``.
"""
from __future__ import annotations

import importlib

from mmengine.registry import MODELS

from .backbone import SwinV2Backbone

__all__ = ['register_all']

HOST_REGISTRIES = ('mmdet.registry', 'mmseg.registry', 'mmpretrain.registry')


def register_all() -> list[str]:
    """Register the backbone; return the scopes it was registered in."""
    scopes = []
    registries = [MODELS]
    for module in HOST_REGISTRIES:
        try:
            registries.append(importlib.import_module(module).MODELS)
        except ImportError:
            continue
    for registry in registries:
        # force: re-importing (e.g. importlib.reload in a notebook) must not raise
        registry.register_module('SwinV2Backbone', module=SwinV2Backbone, force=True)
        scopes.append(registry.scope)
    return scopes
