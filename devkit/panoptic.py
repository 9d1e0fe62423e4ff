"""mmdet's ``LoadPanopticAnnotations`` where panopticapi is not installed.

mmdet reads COCO panoptic PNGs through panopticapi, which is installed from git
(``pip install git+https://github.com/cocodataset/panopticapi.git``), not from PyPI, and so
cannot be installed on a machine that reaches only the package registries. Its one use in loading
is ``rgb2id``; :class:`LoadPanopticAnnotationsNoApi` is mmdet's transform with that function
from :mod:`.synthetic`. The demo configs import this module (``custom_imports``). Evaluating PQ
(``CocoPanopticMetric``) needs panopticapi itself.
"""
from __future__ import annotations

from mmdet.datasets.transforms import LoadAnnotations, LoadPanopticAnnotations
from mmdet.registry import TRANSFORMS

from .synthetic import rgb2id

__all__ = ['LoadPanopticAnnotationsNoApi']


@TRANSFORMS.register_module()
class LoadPanopticAnnotationsNoApi(LoadPanopticAnnotations):
    """``LoadPanopticAnnotations`` (same arguments and outputs) without panopticapi."""

    def __init__(self, with_bbox: bool = True, with_label: bool = True, with_mask: bool = True,
                 with_seg: bool = True, box_type: str = 'hbox', imdecode_backend: str = 'cv2',
                 backend_args: dict | None = None) -> None:
        # the grandparent's __init__: the parent's only adds the panopticapi import
        LoadAnnotations.__init__(self, with_bbox=with_bbox, with_label=with_label,
                                 with_mask=with_mask, with_seg=with_seg, with_keypoints=False,
                                 box_type=box_type, imdecode_backend=imdecode_backend,
                                 backend_args=backend_args)
        self.rgb2id = rgb2id
