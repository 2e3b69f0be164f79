#!/usr/bin/env bash
# What the blas bf16 engine's rounding adds to a GPT-2 layer's products on this CPU (blas_products.c): Debian's
# OpenBLAS with the kernels OPENBLAS_CORETYPE names (default: its own choice), Keel's keel_bf16_round_rows. Needs AVX2.
#
#   OPENBLAS_CORETYPE=Haswell bash scripts/bench/bf16/blas_products.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
cc=$(command -v clang || echo /opt/swift/usr/bin/clang)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cc" -O2 -ISources/CBFloat16/include -I/usr/include/x86_64-linux-gnu/openblas-pthread scripts/bench/bf16/blas_products.c \
    Sources/CBFloat16/bfloat16_gemm.c -o "$work/blas_products" -lopenblas -lpthread -lm
grep -m1 'model name' /proc/cpuinfo
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
"$work/blas_products"
