"""The run-time: what runs and how, decided once per forward.

- ``execution``: the plan. :func:`~.execution.decide` turns a ``Request`` and the machine's
  probes (:mod:`swinv2_backbone.hardware`) into an ``Execution`` whose members (linear, norm,
  residual, mlp, attention) the model calls, and registers the attention backends.
- ``graphs``: CUDA graphs of whole forwards and backwards at fixed shapes.
"""
