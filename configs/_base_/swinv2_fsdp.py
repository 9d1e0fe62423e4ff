# Fully sharded data parallel (FSDP) training through mmengine's FlexibleRunner: each SwinV2
# block is one FSDP unit (swinv2_wrap_policy, registered by this package), parameters,
# gradients and optimizer state are sharded over the processes (FULL_SHARD), and the forward
# and backward run in bf16 with float32 gradients reduced and float32 master weights.
# use_orig_params=True keeps the SwinV2 recipe's paramwise rules (no decay on CPB MLPs,
# temperatures, q/v biases; layer decay). Activation checkpointing: the backbone's with_cp.
# Checkpoints are saved whole by rank 0 ('full'), so tools/test.py, export and conversion load
# them in one process; state_dict_cfg='local' saves one shard per rank instead (a folder).
# Start with tools/dist_train.sh CONFIG NPROC.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='SwinV2FSDPStrategy',  # mmengine's FSDPStrategy, resuming fixed
    model_wrapper=dict(
        auto_wrap_policy=dict(type='swinv2_wrap_policy'),
        use_orig_params=True,
        sharding_strategy='FULL_SHARD',
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='float32')),
    state_dict_cfg='full')
