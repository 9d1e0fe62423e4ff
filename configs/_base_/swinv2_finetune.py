# The SwinV2 fine-tuning recipe shared by the configs here (used next to a host base config):
# import this package, and the paramwise rules for AdamW: no weight decay on norms, position-bias
# MLPs, temperatures, q/v biases and position embeddings; layer-wise lr decay off (1.0); e.g. 0.9
# scales the lr of the block d from the top by 0.9^d.
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)
swinv2_optim_constructor = 'SwinV2LayerDecayOptimWrapperConstructor'
swinv2_paramwise_cfg = dict(
    _delete_=True,
    layer_decay_rate=1.0,
    custom_keys={k: dict(decay_mult=0.0) for k in (
        'norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed')})
