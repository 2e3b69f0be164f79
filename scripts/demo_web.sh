#!/usr/bin/env bash
# The web-data demo: install what is needed, fetch pywb's sample crawl and the language model, build Keel, turn
# the crawl (and any directories of HTML pages given as arguments) into token shards with `keel data pipeline`
# — main text, language and quality filters, deduplication, byte tokens — then train a small GPT on them.
# The corpus goes to data/web-corpus and the run to runs/web-demo (both replaced on each run).
#   bash scripts/demo_web.sh [PAGES_DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/fetch_web_fixtures.sh
echo "build: swift build -c release" >&2
swift build -c release
rm -rf data/web-corpus runs/web-demo
paths="\"$PWD/data/pywb/sample_archive/warcs/iana.warc.gz\""
for pages in "$@"; do paths="$paths, \"$(realpath "$pages")\""; done
.build/release/keel data pipeline --config configs/web-corpus.toml --set "input.paths=[$paths]"
.build/release/keel train --config configs/web-demo.toml --out runs/web-demo
