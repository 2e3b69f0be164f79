#!/usr/bin/env bash
# The demo: install what is needed, fetch the corpus, build Keel, train a BPE vocabulary on the corpus,
# tokenise it into shards, train a small GPT (a few minutes on 2 cores), then print the validation losses
# against the unigram baseline and a text sample. The dataset goes to data/shakespeare-bpe and the run
# to runs/demo (both replaced on each demo run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
export PATH="$PWD/.venv/bin:$PATH"   # the reference tools scripts/setup.sh installed
bash scripts/fetch_corpus.sh
echo "build: swift build -c release" >&2
swift build -c release
rm -rf runs/demo data/shakespeare-bpe
.build/release/keel tokenizer train --vocab-size 1024 --input data/shakespeare --out data/shakespeare-bpe.json
.build/release/keel data prepare --tokenizer data/shakespeare-bpe.json --input data/shakespeare \
    --out data/shakespeare-bpe --val-fraction 0.05
.build/release/keel train --config configs/demo.toml --out runs/demo
