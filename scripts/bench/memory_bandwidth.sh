#!/usr/bin/env bash
# Builds and runs scripts/bench/memory_bandwidth.c: this machine's read bandwidth from memory with 1 thread and with
# THREADS (default 2), the ceiling a decode's tokens/s × weight bytes is measured against (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang -O3 -march=native scripts/bench/memory_bandwidth.c -lpthread -o "$work/bandwidth"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p')"
"$work/bandwidth" 1
"$work/bandwidth" "$threads"
