# mmseg segmenters (UperNet, ...) with a SwinV2 backbone: the class map (argmax in the graph)
# for any batch and image size, on ONNX Runtime.
#   python tools/deploy.py configs/deploy/segmentation_onnxruntime_dynamic.py MODEL_CFG CKPT IMG
_base_ = ['./_base_/onnxruntime_dynamic.py']
onnx_config = dict(output_names=['output'],
                   dynamic_axes=dict(output={0: 'batch', 2: 'height', 3: 'width'}))
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=True)
