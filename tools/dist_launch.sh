#!/usr/bin/env bash
# Run a tool under torchrun: bash tools/dist_launch.sh TOOL.py NUM_PROCS [tool arguments...]
# (used by dist_train.sh and dist_test.sh). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and
# PORT on every node. Without GPUs the processes use gloo on the CPU.
set -euo pipefail
TOOL=$1
NPROC=$2
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# exec: the launcher's pid becomes torchrun's, so killing it kills torchrun, and the tools end
# their ranks with it (cnxv2_dense.engine.end_with_launcher).
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$TOOLS/$TOOL" "${@:3}" --launcher pytorch
