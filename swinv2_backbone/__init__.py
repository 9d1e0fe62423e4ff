"""Swin Transformer V2 backbone for MMDetection 3.x and MMSegmentation 1.x.

The layout, from the bottom up (a module imports only from its own layer and the layers
listed before it, which ``tests/test_lint.py`` checks):

- ``compat``, ``files``, ``hardware``, ``ops``: version differences decided once, atomic writes,
  every probe of the machine, and the math stated once (the reference attention and its
  gradient, windows, position tables);
- ``kernels/``: fast implementations of that math, one per backend;
- ``runtime/``: the execution plan that picks the kernels, CUDA graphs;
- ``weights/``: checkpoint layouts, conversion, loading, downloads;
- ``model/``: the backbone, its blocks and attention;
- ``apps/``: feature extraction, ONNX export, mmdeploy;
- ``hosts/``: registries, the runner behind tools/, the optimizer constructor, FSDP;
- ``devkit/``: what the tools and the tests share (random and trained-like weights, error
  measures, the synthetic dataset, benchmarks, op counts); imported by nothing above.
"""
from .apps.export import export_backbone_neck, export_onnx
from .apps.extract import build_extractor, extract_features
from .compat import allow_mmengine_checkpoints
from .hosts.distributed import SwinV2FSDPStrategy, SwinV2WrapPolicy, swinv2_wrap_policy
from .hosts.optim import SwinV2LayerDecayOptimWrapperConstructor
from .hosts.registry import register_all
from .model.backbone import ARCH_PRESETS, FEATURE_NAMES, SwinV2Backbone
from .weights.checkpoints import convert_state_dict, detect_format
from .weights.loading import LoadReport, load_pretrained, read_checkpoint, save_checkpoint

__version__ = '0.1.0'

REGISTERED_SCOPES = register_all()
allow_mmengine_checkpoints()

__all__ = ['ARCH_PRESETS', 'FEATURE_NAMES', 'LoadReport', 'REGISTERED_SCOPES', 'SwinV2Backbone',
           'SwinV2FSDPStrategy', 'SwinV2LayerDecayOptimWrapperConstructor', 'SwinV2WrapPolicy',
           '__version__',
           'build_extractor', 'convert_state_dict', 'detect_format', 'export_backbone_neck',
           'export_onnx', 'extract_features', 'load_pretrained', 'read_checkpoint',
           'save_checkpoint', 'swinv2_wrap_policy']
