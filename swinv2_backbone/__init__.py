"""Swin Transformer V2 backbone for MMDetection 3.x and MMSegmentation 1.x."""
from .backbone import ARCH_PRESETS, FEATURE_NAMES, SwinV2Backbone
from .checkpoints import convert_state_dict, detect_format
from .compat import allow_mmengine_checkpoints
from .distributed import SwinV2FSDPStrategy, swinv2_wrap_policy
from .export import export_backbone_neck, export_onnx
from .extract import build_extractor, extract_features
from .loading import LoadReport, load_pretrained, read_checkpoint, save_checkpoint
from .optim import SwinV2LayerDecayOptimWrapperConstructor
from .registry import register_all

__version__ = '0.1.0'

REGISTERED_SCOPES = register_all()
allow_mmengine_checkpoints()

__all__ = ['ARCH_PRESETS', 'FEATURE_NAMES', 'LoadReport', 'REGISTERED_SCOPES', 'SwinV2Backbone',
           'SwinV2FSDPStrategy', 'SwinV2LayerDecayOptimWrapperConstructor', '__version__',
           'build_extractor', 'convert_state_dict', 'detect_format', 'export_backbone_neck',
           'export_onnx', 'extract_features', 'load_pretrained', 'read_checkpoint',
           'save_checkpoint', 'swinv2_wrap_policy']
