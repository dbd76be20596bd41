#!/usr/bin/env bash
# Multi-GPU / multi-node evaluation with torchrun (mmdet's interface):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh" test.py "$3" "$1" "$2" "${@:4}"
