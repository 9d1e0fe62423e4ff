#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]   (torchrun; gloo on CPU)
# PYTHON (default: python) picks the interpreter, e.g. PYTHON=.venv/bin/python.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]" >&2
    echo "  e.g. PYTHON=.venv/bin/python tools/dist_test.sh configs/demo/upernet_swinv2-nano_shapes_fsdp.py CHECKPOINT 2" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
PORT=${PORT:-29500}
DIR="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-python}" -m torch.distributed.run --nnodes=1 --nproc_per_node="$NPROC" \
    --master_addr=127.0.0.1 --master_port="$PORT" \
    "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
