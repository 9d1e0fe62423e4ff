#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NPROC [train.py args...]   (torchrun; gloo on CPU, NCCL on GPU)
# PYTHON (default: python) picks the interpreter, e.g. PYTHON=.venv/bin/python.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: tools/dist_train.sh CONFIG NPROC [train.py args...]" >&2
    echo "  e.g. PYTHON=.venv/bin/python tools/dist_train.sh configs/demo/upernet_swinv2-nano_shapes_fsdp.py 2" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
PORT=${PORT:-29500}
DIR="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-python}" -m torch.distributed.run --nnodes=1 --nproc_per_node="$NPROC" \
    --master_addr=127.0.0.1 --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
