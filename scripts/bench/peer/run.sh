#!/usr/bin/env bash
# Peer benchmark: Keel's training step against the same model in PyTorch (eager and torch.compile), alternated.
#
#   scripts/bench/peer/run.sh [CONFIG...] [peer.py options]
#
# CONFIG: gpt2-124m, small, gpt2-124m-llama, small-llama, gpt2-124m-1k (default: all five). Any other argument goes to
# peer.py (--rounds N, --skip-compile, --json OUT, --keel PATH, ...; see peer.py --help). Creates
# .venv-bench/ in the repository root with the CPU-only torch wheel and numpy when it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
venv=.venv-bench

if ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
    echo "setting up $venv (CPU-only PyTorch, numpy)" >&2
    python3 -m venv "$venv"
    wheel="$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)"
    if [ -n "$wheel" ]; then
        "$venv/bin/pip" install --quiet "$wheel" numpy
    else
        # No local wheel: PyTorch's CPU index (the default PyPI wheel pulls in GBs of CUDA libraries).
        "$venv/bin/pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu
        "$venv/bin/pip" install --quiet numpy
    fi
fi

configs=()
rest=()
for arg in "$@"; do
    case "$arg" in
        gpt2-124m|small|gpt2-124m-llama|small-llama|gpt2-124m-1k) configs+=("$arg") ;;
        *) rest+=("$arg") ;;
    esac
done
if [ ${#configs[@]} -gt 0 ]; then
    rest=(--configs "$(IFS=,; echo "${configs[*]}")" "${rest[@]+"${rest[@]}"}")
fi
exec "$venv/bin/python" scripts/bench/peer/peer.py "${rest[@]+"${rest[@]}"}"
