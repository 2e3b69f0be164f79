#!/usr/bin/env bash
# Keel's fp32 training step on each BLAS library this machine has (OpenBLAS, BLIS, Intel MKL — see
# docs/platform.md), alternated in fresh processes, and what the calibration would choose: for each preset and
# round, `KEEL_BLAS=LIBRARY keel bench` per library. Prints median ms/step per run and, per preset, each
# library's median over the rounds relative to OpenBLAS (above 1: faster than OpenBLAS).
# Usage: scripts/bench/blas/libraries.sh [ROUNDS] [PRESET...]   (default 3 rounds, gpt2-124m and small)
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-3}; shift || true
presets=("${@:-gpt2-124m}"); [ $# -eq 0 ] && presets=(gpt2-124m small)
swift build -c release --product keel >/dev/null
grep -m1 'model name' /proc/cpuinfo
export PATH="$PWD/.venv/bin:$PATH"   # where setup.sh installs MKL, on Intel CPUs
libraries=(openblas)
/sbin/ldconfig -p | grep -q 'libblis.so.4 ' && libraries+=(blis)
[ -e .venv/lib/libmkl_rt.so.2 ] || /sbin/ldconfig -p | grep -q 'libmkl_rt.so.2 ' && libraries+=(mkl)
echo "libraries: ${libraries[*]}"
cache=$(mktemp -d); trap 'rm -rf "$cache"' EXIT
echo "calibration: $(XDG_CACHE_HOME=$cache .build/release/keel bench --preset small --steps 1 --warmup 0 2>&1 \
    | grep -m1 -o 'fp32 products: .*')"
for preset in "${presets[@]}"; do
  for round in $(seq 1 "$rounds"); do
    for library in "${libraries[@]}"; do
      KEEL_BLAS=$library .build/release/keel bench --preset "$preset" --steps 3 --warmup 1 --json 2>/dev/null | tail -1 \
        | python3 -c '
import json, statistics, sys
d = json.loads(sys.stdin.read())
print(d["config"], sys.argv[1], sys.argv[2], "%.0f" % statistics.median(d["ms_per_step"]))' "$round" "$library"
    done
  done
done | python3 -c '
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
for line in sys.stdin:
    preset, rnd, library, ms = line.split()
    print(preset, "round", rnd, library, ms, "ms/step")
    runs[preset][library].append(float(ms))
for preset, libraries in runs.items():
    base = statistics.median(libraries["openblas"])
    print(preset + ": " + ", ".join("%s %.0f ms (%.2f× OpenBLAS)" % (name, statistics.median(ms), base / statistics.median(ms))
                                    for name, ms in libraries.items()))
'
