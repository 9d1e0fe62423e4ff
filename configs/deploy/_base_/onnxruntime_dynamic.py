# mmdeploy: one ONNX file (TorchScript exporter, opset 11) for any batch and image size, run by
# ONNX Runtime with mmdeploy's custom ops (its wheel carries them). The task configs beside this
# name the outputs and the post-processing.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    input_shape=None,
    # mmdeploy's graph optimiser needs its TorchScript extension, which its wheel lacks
    optimize=False,
    dynamic_axes=dict(input={0: 'batch', 2: 'height', 3: 'width'}))
backend_config = dict(type='onnxruntime')
