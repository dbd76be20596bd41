#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun (mmdet's interface):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
