# A Mask R-CNN whose backbone is SwinV2-T, inheriting mmdet's own COCO config (used by tests).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='SwinV2Backbone', arch='tiny', window_size=8,
                  drop_path_rate=0.0, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]))
