# The SwinV2 fine-tuning recipe shared by the configs here: the paramwise rules for AdamW (with
# SwinV2LayerDecayOptimWrapperConstructor): no weight decay on norms, position-bias MLPs,
# temperatures, q/v biases and position embeddings; layer-wise lr decay off (1.0); e.g. 0.9
# scales the lr of the block d from the top by 0.9^d.
swinv2_optim_constructor = 'SwinV2LayerDecayOptimWrapperConstructor'
# the parameters (by name) that take no weight decay
swinv2_no_decay_keys = ('norm', 'cpb_mlp', 'logit_scale', 'q_bias', 'v_bias', 'absolute_pos_embed')
swinv2_paramwise_cfg = dict(
    _delete_=True,
    layer_decay_rate=1.0,
    custom_keys={k: dict(decay_mult=0.0) for k in swinv2_no_decay_keys})
# The same for the query-based heads (DINO, Mask2Former), with what their host recipes add: the
# backbone at 0.1x the lr, and (Mask2Former) no weight decay on the query and level embeddings.
swinv2_query_paramwise_cfg = dict(
    _delete_=True,
    layer_decay_rate=1.0,
    backbone_lr_mult=0.1,
    custom_keys={
        **{k: dict(decay_mult=0.0) for k in swinv2_no_decay_keys},
        **{k: dict(lr_mult=1.0, decay_mult=0.0) for k in (
            'query_embed', 'query_feat', 'level_embed')}})
