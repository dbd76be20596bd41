#!/usr/bin/env bash
# Wheels of what benchmarks/gpu_check.py needs beyond a PyTorch image, for a GPU machine that has
# no network: mmengine, mmcv-lite (mmcv 2.1 without compiled ops: the same `mmcv` module) and
# their small pure-Python dependencies. Run it where pip reaches a package index:
#
#   bash benchmarks/make_offline_wheelhouse.sh [DIR]   # DIR: build/wheelhouse (git-ignored)
#
# then take DIR (about 2 MB) to the machine, beside a copy of this checkout, and run there
#
#   python3 benchmarks/gpu_check.py --out OUT --wheelhouse build/wheelhouse
#
# which, when mmengine or mmcv is missing, installs the wheels with
# `pip install --no-index --no-deps --target <temporary folder>` and puts that folder first on
# its path (nothing of the machine's own environment changes). The list and its pins live in
# benchmarks/gpu_check.py (WHEELHOUSE_PACKAGES: mmengine and mmcv at requirements/runtime.txt's
# versions, the rest at the versions installed in the Python that runs this, PYTHON or .venv).
# The machine is taken to hold numpy, opencv-python-headless, matplotlib, rich, pyyaml and the
# rest of gpu_check.MACHINE_PACKAGES; docs/speed.md (section GPU) says how to check the recipe
# on a CPU machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/build/wheelhouse}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
log() { printf '[make_offline_wheelhouse] %s\n' "$*" >&2; }

mapfile -t SPECS < <("$PY" "$ROOT/benchmarks/gpu_check.py" --print-wheelhouse-requirements)
if (( ${#SPECS[@]} == 0 )); then
  log "benchmarks/gpu_check.py --print-wheelhouse-requirements printed nothing"
  exit 2
fi
mkdir -p "$DIR"
rm -f "$DIR"/*.whl  # one version of each: two would stop pip
log "downloading into $DIR: ${SPECS[*]}"
# Pure-Python wheels only (`--platform any --abi none`): the machine's Python version and
# platform need not be this one's (tomli, for instance, also ships compiled wheels).
"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
  --platform any --implementation py --abi none --dest "$DIR" "${SPECS[@]}"

for wheel in "$DIR"/*.whl; do
  if [[ "$wheel" != *-none-any.whl ]]; then
    log "$(basename "$wheel") is not a pure-Python wheel (py3-none-any); it may not install on"
    log "the GPU machine. Pin a release that has one, or build it there."
    exit 1
  fi
done
log "$(find "$DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
