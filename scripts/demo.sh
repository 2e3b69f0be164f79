#!/usr/bin/env bash
# The demo: install what is needed, fetch the corpus, build Keel, train a small GPT on byte-level
# Shakespeare (a few minutes on 2 cores), then print the validation losses against the unigram baseline
# and a text sample. The run is written to runs/demo (replaced on each demo run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/fetch_corpus.sh
echo "build: swift build -c release" >&2
swift build -c release
rm -rf runs/demo
.build/release/keel train --config configs/demo.toml --out runs/demo
