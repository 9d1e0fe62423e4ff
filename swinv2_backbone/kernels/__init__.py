"""Fast kernels, apart from the model code that states the math (attention.py, blocks.py).

- :mod:`.onednn`: linear layers on oneDNN's GEMM (the cpu path);
- :mod:`.cpu`: chunked attention and lean autograd functions (the cpu path);
- :mod:`.device`: whole-stage attention through ``scaled_dot_product_attention`` (the batched
  path, for GPUs);
- :mod:`.fused`: Triton kernels of the batched path's inference on GPUs (the q/k
  normalisation, the residual norms).

Which runs is decided once per forward (:mod:`swinv2_backbone.runtime.execution`).
"""
