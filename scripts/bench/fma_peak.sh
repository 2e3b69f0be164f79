#!/usr/bin/env bash
# One core's fp32 multiply-add peak (scripts/bench/fma_peak.c), with the CPU's model and nominal clock.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O2 -o "$work/fma_peak" fma_peak.c
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(grep -m1 'cpu MHz' /proc/cpuinfo | sed 's/.*: //') MHz (nominal)"
"$work/fma_peak"
