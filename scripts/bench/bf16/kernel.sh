#!/usr/bin/env bash
# Keel's bf16 block kernel and packing on one core against OpenBLAS's single-threaded sgemm (kernel.c), on a
# layer's product and on the output head's weight gradient (A transposed). Pass the engine (default: avx2) and,
# to time OpenBLAS's AVX2 kernels on an AVX-512 CPU, OPENBLAS_CORETYPE=Haswell.
# Usage: scripts/bench/bf16/kernel.sh [ENGINE]
set -euo pipefail
cd "$(dirname "$0")"
engine=${1:-avx2}
binary=$(mktemp)
trap 'rm -f "$binary"' EXIT
clang -O2 -I../../../Sources/CBFloat16/include $(pkg-config --cflags openblas) -o "$binary" kernel.c $(pkg-config --libs openblas) -lm -lpthread
grep -m1 'model name' /proc/cpuinfo
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
for round in 1 2; do
    OPENBLAS_NUM_THREADS=1 "$binary" 2048 2304 768 "$engine"
    OPENBLAS_NUM_THREADS=1 "$binary" 50257 384 2048 "$engine" 1 0
done
