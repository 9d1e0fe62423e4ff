"""The model: :class:`~.backbone.SwinV2Backbone`, its stages and blocks (``blocks``) and the
window attention with its continuous position bias (``attention``). The modules state the
architecture and call the execution plan (:mod:`swinv2_backbone.runtime.execution`) for what
runs; no kernel is imported here."""
