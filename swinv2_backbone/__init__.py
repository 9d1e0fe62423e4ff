"""Swin Transformer V2 backbone for MMDetection 3.x and MMSegmentation 1.x.

The layout, from the bottom up (a module imports only from its own layer and the layers
listed before it, which ``tests/test_lint.py`` checks):

- ``compat``, ``files``, ``hardware``, ``ops``, ``version``: version differences decided once,
  atomic writes, every probe of the machine, pure helpers (windows, masks, position tables);
  ``install``: mmcv with its ops for the environment's torch
  (``python -m swinv2_backbone.install mmcv``; standard library only);
- ``runtime/``: the execution plan, decided once per forward as plain data; CUDA graphs;
- ``kernels/``: the attention math stated once (``reference``) and the fast paths, one file
  per backend, each with its backward;
- ``weights/``: checkpoint layouts, conversion, loading, downloads;
- ``model/``: the backbone, its blocks and attention;
- ``apps/``: feature extraction, ONNX export, mmdeploy;
- ``hosts/``: registries, the runner behind tools/, the optimizer constructor, FSDP.

The development kit (benchmarks, profilers, op counts, the synthetic shapes data, the demos'
pictures) is ``devkit/`` beside the package in a checkout, not installed with it.
"""
import warnings

# mmengine, mmdet and mmseg import pkg_resources, which warns on every import in setuptools >= 70;
# nothing a user can act on (setuptools < 81 still has it)
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from .apps.export import export_backbone_neck, export_onnx  # noqa: E402
from .apps.extract import build_extractor, extract_features  # noqa: E402
from .compat import allow_mmengine_checkpoints  # noqa: E402
from .hosts.distributed import (SwinV2FSDPStrategy, SwinV2WrapPolicy,  # noqa: E402
                                swinv2_wrap_policy)
from .hosts.optim import SwinV2LayerDecayOptimWrapperConstructor  # noqa: E402
from .hosts.registry import register_all  # noqa: E402
from .model.backbone import ARCH_PRESETS, FEATURE_NAMES, SwinV2Backbone  # noqa: E402
from .weights.checkpoints import convert_state_dict, detect_format  # noqa: E402
from .weights.loading import (LoadReport, load_pretrained, read_checkpoint,  # noqa: E402
                              save_checkpoint)

from .version import __version__  # noqa: E402

REGISTERED_SCOPES = register_all()
allow_mmengine_checkpoints()

__all__ = ['ARCH_PRESETS', 'FEATURE_NAMES', 'LoadReport', 'REGISTERED_SCOPES', 'SwinV2Backbone',
           'SwinV2FSDPStrategy', 'SwinV2LayerDecayOptimWrapperConstructor', 'SwinV2WrapPolicy',
           '__version__',
           'build_extractor', 'convert_state_dict', 'detect_format', 'export_backbone_neck',
           'export_onnx', 'extract_features', 'load_pretrained', 'read_checkpoint',
           'save_checkpoint', 'swinv2_wrap_policy']
