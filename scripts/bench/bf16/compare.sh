#!/usr/bin/env bash
# Times the bf16 products of one GPT-2 124M layer (or, with "head", of the output head) for two versions of
# Sources/CBFloat16/bfloat16_gemm.c, alternating in one process: v0 from git revision REV (default HEAD), v1
# from the working tree. For tuning the engines' kernels: the best engine here, or the one KEEL_BF16_ENGINE names
# (amx, avx512, avx512f, avx2, portable — the engines with kernels of their own, not blas; the CPU must have it). REV must be one whose packing functions take the
# engine as their first argument, as the working tree's do (layer_products.c calls both versions so).
#
#   KEEL_BF16_ENGINE=avx2 bash scripts/bench/bf16/compare.sh [REV] [head]
set -euo pipefail
cd "$(dirname "$0")/../../.."
rev=${1:-HEAD}
what=${2:-layer}
cc=$(command -v clang || echo /opt/swift/usr/bin/clang)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git show "$rev:Sources/CBFloat16/bfloat16_gemm.c" > "$work/v0.c"
cp Sources/CBFloat16/bfloat16_gemm.c "$work/v1.c"
for v in v0 v1; do
    "$cc" -O2 -ISources/CBFloat16/include -c "$work/$v.c" -o "$work/$v.o" \
        -Dkeel_bf16_pack_a=${v}_pack_a -Dkeel_bf16_pack_b=${v}_pack_b -Dkeel_bf16_gemm_blocks=${v}_blocks \
        -Dkeel_bf16_best_engine=${v}_engine -Dkeel_bf16_packed_count=${v}_count \
        -Dkeel_bf16_pack_a_slice=${v}_pack_a_slice -Dkeel_bf16_serial_scratch_count=${v}_serial_count \
        -Dkeel_bf16_gemm_serial=${v}_gemm_serial -Dkeel_bf16_round_rows=${v}_round_rows
done
"$cc" -O2 -ISources/CBFloat16/include scripts/bench/bf16/layer_products.c "$work/v0.o" "$work/v1.o" -o "$work/compare" -lpthread -lm
echo "v0 = $rev, v1 = working tree"
"$work/compare" "$what"
