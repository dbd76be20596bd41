#!/usr/bin/env bash
# Build the project's environment in .venv at the repo root. Idempotent: when nothing it depends
# on changed since the last successful run, it returns in seconds.
#
#   bash tools/setup_env.sh            # create / update .venv
#   CNXV2_FORCE_SETUP=1 bash tools/setup_env.sh   # redo every step
#   CNXV2_ENV=lowest bash tools/setup_env.sh      # .venv-lowest: the lowest supported versions
#
# Two environments, one code path: the default one (.venv) installs the tested lock,
# requirements/*.txt; CNXV2_ENV=lowest builds .venv-lowest from requirements/lowest/*.txt, every
# declared dependency at the floor of its range (torch 2.1, numpy 1.x), which CI tests too.
#
# mmcv 2.1.0 (required by mmdet 3.3.0 and mmsegmentation 1.2.2) ships only as a source
# distribution. We compile it with its ops (CUDA ops too when nvcc and a GPU are present) and
# keep the wheel in ~/.cache/cnxv2_dense/wheels keyed by mmcv, torch, python and device, so a
# later clone reuses it instead of compiling again (~11 min on 2 cores); each environment has
# its own wheel, since its torch differs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${CNXV2_ENV:-main}" in
  main) VENV="$ROOT/.venv"; REQ_DIR="$ROOT/requirements" ;;
  lowest) VENV="$ROOT/.venv-lowest"; REQ_DIR="$ROOT/requirements/lowest" ;;
  *) printf '[setup_env] CNXV2_ENV=%s: expected main (the default) or lowest\n' "$CNXV2_ENV" >&2
     exit 2 ;;
esac
PY_BOOT="${PYTHON:-python3}"
CACHE_DIR="${CNXV2_CACHE_DIR:-$HOME/.cache/cnxv2_dense}"
MMCV_VERSION="$(sed -n 's/^mmcv==\([^ #]*\).*/\1/p' "$REQ_DIR/runtime.txt")"
log() { printf '[setup_env] %s\n' "$*" >&2; }
if [[ -z "$MMCV_VERSION" ]]; then
  log "no mmcv==VERSION line in $REQ_DIR/runtime.txt"
  exit 2
fi

# --- 0. skip everything when the stamp matches -------------------------------------------------
stamp_inputs() {
  cat "$ROOT/tools/setup_env.sh" "$REQ_DIR"/*.txt "$ROOT/setup.py"
  "$PY_BOOT" --version 2>&1
}
STAMP="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
STAMP_FILE="$VENV/.cnxv2_env_stamp"
if [[ -z "${CNXV2_FORCE_SETUP:-}" && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] \
   && "$VENV/bin/python" -c "import cnxv2_dense, mmcv.ops" >/dev/null 2>&1; then
  log "environment is up to date ($VENV)"
  exit 0
fi

# --- 1. virtual environment -------------------------------------------------------------------
# A first install needs room: the registry's torch brings ~4 GB of CUDA libraries (the finished
# .venv is ~5.5 GB) and pip unpacks its downloads under TMPDIR first. Say so up front instead of
# failing half-way with "No space left on device".
MIN_FREE_GB="${CNXV2_MIN_FREE_GB:-8}"
free_gb() { df -Pk "$1" | awk 'NR == 2 {print int($4 / 1048576)}'; }
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  for dir in "$ROOT" "${TMPDIR:-/tmp}"; do
    have="$(free_gb "$dir")"
    if (( have < MIN_FREE_GB )); then
      log "only ${have} GB free on the disk holding $dir; installing torch and the OpenMMLab"
      log "stack needs about ${MIN_FREE_GB} GB. Free some space (old clones' .venv folders are"
      log "5.5 GB each), or point TMPDIR at a larger disk, and run this again."
      log "(CNXV2_MIN_FREE_GB=N changes the threshold.)"
      exit 1
    fi
  done
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# A lock may also constrain everything its requirement files pull in: requirements/lowest/
# pins each transitive dependency, so that pip picks no release that needs numpy 2.
CONSTRAINTS=()
if [[ -f "$REQ_DIR/constraints.txt" ]]; then
  CONSTRAINTS=(-c "$REQ_DIR/constraints.txt")
fi
PIP=("$PY" -m pip install --disable-pip-version-check -q "${CONSTRAINTS[@]}")
"${PIP[@]}" --upgrade "pip>=24"
"${PIP[@]}" -r "$REQ_DIR/build.txt"

# --- 2. torch ---------------------------------------------------------------------------------
"${PIP[@]}" -r "$REQ_DIR/torch.txt"

# --- 3. mmcv with compiled ops, from the wheel cache or built once ------------------------------
mmcv_ok() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; }
if ! mmcv_ok; then
  # torch >= 2.10 headers need C++20; older ones compile as C++17, the standard mmcv 2.1.0 sets.
  read -r TORCH_VER PY_TAG CXX_STD <<<"$("$PY" -c 'import sys, torch
major, minor = (int(x) for x in torch.__version__.split(".")[:2])
print(torch.__version__.replace("+", "_"), f"cp{sys.version_info[0]}{sys.version_info[1]}",
      "c++20" if (major, minor) >= (2, 10) else "c++17")')"
  DEVICE_TAG=cpu
  if command -v nvcc >/dev/null 2>&1 && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE_TAG="cuda$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  fi
  WHEEL_DIR="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VER-$PY_TAG-$DEVICE_TAG"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "compiling mmcv $MMCV_VERSION with ops ($DEVICE_TAG); this takes ~11 min on 2 cores, once"
    BUILD_DIR="$(mktemp -d)"
    trap 'rm -rf "$BUILD_DIR"' EXIT
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$BUILD_DIR"
    tar -xzf "$BUILD_DIR"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD_DIR"
    SRC="$BUILD_DIR/mmcv-$MMCV_VERSION"
    # mmcv 2.1.0 hard-codes C++17 (C++14 for old torch); use what this torch's headers need.
    sed -i "s/-std=c++17/-std=$CXX_STD/g; s/std=c++14/std=$CXX_STD/g" "$SRC/setup.py"
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    [[ "$DEVICE_TAG" == cpu ]] && export FORCE_CUDA=0 || export FORCE_CUDA=1
    mkdir -p "$WHEEL_DIR"
    "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
      "$SRC" -w "$BUILD_DIR/dist"
    mv "$BUILD_DIR"/dist/mmcv-*.whl "$WHEEL_DIR/"
  else
    log "reusing cached mmcv wheel from $WHEEL_DIR"
  fi
  "${PIP[@]}" "$WHEEL_DIR"/mmcv-*.whl
fi

# --- 4. the rest of the stack, test tools and the package itself --------------------------------
DEPLOY=()
# The [deploy] extra (onnx, onnxruntime): the export tests run in the main environment.
[[ -f "$REQ_DIR/deploy.txt" ]] && DEPLOY=(-r "$REQ_DIR/deploy.txt")
"${PIP[@]}" -r "$REQ_DIR/runtime.txt" -r "$REQ_DIR/tests.txt" "${DEPLOY[@]}"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$PY" - <<'PYCHECK'
import torch, torchvision, timm, mmcv, mmcv.ops, mmengine, mmdet, mmseg, pycocotools  # noqa: F401
import cnxv2_dense  # noqa: F401
print(f'[setup_env] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, timm {timm.__version__}')
PYCHECK
echo "$STAMP" > "$STAMP_FILE"
