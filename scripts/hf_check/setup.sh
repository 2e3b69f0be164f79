#!/usr/bin/env bash
# Creates the virtualenv .venv-hf (repo root) with CPU-only PyTorch, Hugging Face
# transformers and numpy, used by scripts/hf_check/*.py.
#
#   bash scripts/hf_check/setup.sh            # idempotent; re-running is cheap
#   TORCH_SPEC='torch==2.13.0+cpu' bash scripts/hf_check/setup.sh   # force a torch requirement
#
# Torch selection (first that applies):
#   1. $TORCH_SPEC if set (anything pip accepts: a requirement or a wheel path).
#   2. A CPU-only torch wheel (torch-*+cpu-<this python>-*.whl) found in pip's
#      find-links directories (PIP_FIND_LINKS / pip config; /opt/wheels on the
#      project machines). This wheel has no nvidia-* dependencies (~190 MB).
#   3. Plain `torch` from PyPI. On Linux x86_64 the PyPI wheel is the CUDA build and
#      pulls the nvidia-*-cu* runtime wheels (several GB); it still runs on CPU.
#      (--no-deps is not a way out: that build's libraries link against the CUDA
#      runtime libraries those nvidia-* wheels provide.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv-hf"
PY="${PYTHON:-python3}"
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)

pick_local_cpu_wheel() {
    # Print the newest torch-*+cpu wheel for this interpreter found in pip's find-links dirs.
    local tag dirs d
    tag="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    dirs="${PIP_FIND_LINKS:-} $("$VPY" -m pip config get global.find-links 2>/dev/null || true) /opt/wheels"
    for d in $dirs; do
        d="${d#file://}"
        [ -d "$d" ] || continue
        ls "$d"/torch-*+cpu-"$tag"-"$tag"-*linux*_"$(uname -m)".whl 2>/dev/null || true
    done | sort -V | tail -n 1
}

if "$VPY" -c 'import torch' >/dev/null 2>&1; then
    echo "[setup] torch already installed: $("$VPY" -c 'import torch; print(torch.__version__)')"
else
    spec="${TORCH_SPEC:-}"
    if [ -z "$spec" ]; then
        spec="$(pick_local_cpu_wheel)"
        if [ -n "$spec" ]; then
            echo "[setup] using local CPU-only torch wheel: $spec"
        else
            spec="torch"
            echo "[setup] no CPU-only torch wheel found in find-links; installing torch from PyPI"
            echo "[setup] (the PyPI Linux x86_64 wheel pulls nvidia-* CUDA runtime packages: several GB)"
        fi
    fi
    "${PIP[@]}" "$spec" numpy
fi

# Keep whatever torch is installed; add transformers + numpy (and their deps) from PyPI.
tv="$("$VPY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
cons="$(mktemp)"; trap 'rm -f "$cons"' EXIT
echo "torch==$tv" > "$cons"
"${PIP[@]}" -c "$cons" transformers numpy

"$VPY" - <<'PY'
import numpy, torch, transformers
print(f"[setup] numpy {numpy.__version__}, torch {torch.__version__} "
      f"(cuda build: {torch.version.cuda}), transformers {transformers.__version__}")
PY
echo "[setup] done in $(( $(date +%s) - start ))s: $VENV"
