#!/usr/bin/env bash
# Keel's bf16 training step against its fp32 step on this CPU, alternated in fresh processes: for each preset and
# round, `keel bench` in fp32 then with --precision bf16 (the engine Keel picks here: AMX, else AVX512-BF16, else blas,
# the fp32 library on rounded operands). Prints each run's median ms/step, the products' ceilings, and fp32 ms / bf16 ms per round (above 1: bf16
# faster). KEEL_BF16_ENGINE and OPENBLAS_CORETYPE (with KEEL_NO_REEXEC=1) pass through, to time another engine or
# OpenBLAS's AVX2 kernels on an AVX-512 CPU; the header shows both.
# Usage: scripts/bench/bf16/engine_vs_fp32.sh [ROUNDS] [PRESET...]   (default 3 rounds, gpt2-124m and small)
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-3}; shift || true
presets=("${@:-gpt2-124m}"); [ $# -eq 0 ] && presets=(gpt2-124m small)
swift build -c release --product keel >/dev/null
grep -m1 'model name' /proc/cpuinfo
grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
.build/release/keel bench --preset small --steps 1 --warmup 0 --precision bf16 2>&1 | grep -m1 -o 'fp32 products: .*'
echo "KEEL_BF16_ENGINE=${KEEL_BF16_ENGINE:-} OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} KEEL_NO_REEXEC=${KEEL_NO_REEXEC:-}"
for preset in "${presets[@]}"; do
  for round in $(seq 1 "$rounds"); do
    for precision in fp32 bf16; do
      .build/release/keel bench --preset "$preset" --steps 4 --warmup 1 --precision "$precision" --json 2>/dev/null | tail -1 \
        | python3 -c '
import json, statistics, sys
d = json.loads(sys.stdin.read())
print(d["config"], sys.argv[1], sys.argv[2], "%.0f" % statistics.median(d["ms_per_step"]),
      "%.0f" % d["sgemm_gflops"], "%.0f" % d.get("bf16_gemm_gflops", 0))' "$round" "$precision"
    done
  done
done | python3 -c '
import collections, statistics, sys
runs = collections.defaultdict(dict)
print("%-10s %5s %9s %9s %11s %11s %8s" % ("preset", "round", "fp32 ms", "bf16 ms", "sgemm GF/s", "bf16 GF/s", "fp32/bf16"))
for line in sys.stdin:
    preset, rnd, precision, ms, sgemm, bf16 = line.split()
    runs[(preset, rnd)][precision] = (float(ms), float(sgemm), float(bf16))
ratios = collections.defaultdict(list)
for (preset, rnd), r in runs.items():
    ratio = r["fp32"][0] / r["bf16"][0]
    ratios[preset].append(ratio)
    print("%-10s %5s %9.0f %9.0f %11.0f %11.0f %7.2f×" % (preset, rnd, r["fp32"][0], r["bf16"][0], r["fp32"][1], r["bf16"][2], ratio))
for preset, values in ratios.items():
    print("%s: fp32/bf16 min %.2f median %.2f max %.2f" % (preset, min(values), statistics.median(values), max(values)))
'
