# mmdet instance segmentation (Mask R-CNN, Cascade Mask R-CNN) with a SwinV2 backbone: dets,
# labels and each detection's 28 x 28 mask logits, pasted into the image by mmdeploy's Python
# post-processing; any batch and image size, on ONNX Runtime.
#   python tools/deploy.py configs/deploy/instance-seg_onnxruntime_dynamic.py MODEL_CFG CKPT IMG
_base_ = ['./detection_onnxruntime_dynamic.py']
onnx_config = dict(output_names=['dets', 'labels', 'masks'],
                   dynamic_axes=dict(masks={0: 'batch', 1: 'num_dets'}))
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
