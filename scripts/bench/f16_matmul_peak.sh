#!/usr/bin/env bash
# Builds and runs scripts/bench/f16_matmul_peak.c against CQuant's sources (as the package builds them: -O2, no
# floating-point contraction) and prints the CPU's nominal clock beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -ffp-contract=off -fno-math-errno -I Sources/CQuant/include -I Sources/CQuant scripts/bench/f16_matmul_peak.c \
    Sources/CQuant/*.c -lm -lpthread -o "$work/peak"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(grep -m1 'cpu MHz' /proc/cpuinfo | sed 's/.*: //') MHz (nominal)"
"$work/peak"
