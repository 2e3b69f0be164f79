#!/usr/bin/env bash
# Fetches the real crawl the WARC tests read: pywb's sample archive (iana.warc.gz, 343 records, and its CDXJ index
# of URL, digest, length and offset per record), shipped in the PyPI source distribution pywb 2.10.0, into
# data/pywb/sample_archive/, with the pip of .venv (scripts/setup.sh makes it). Skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
target=data/pywb/sample_archive
if [ -f "$target/warcs/iana.warc.gz" ] && [ -f "$target/cdxj/iana.cdxj" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "web fixtures: downloading pywb==2.10.0 (source) from PyPI" >&2
.venv/bin/python3 -m pip download --disable-pip-version-check --quiet --no-binary :all: --no-deps --dest "$work" pywb==2.10.0
tar -xzf "$work"/pywb-2.10.0.tar.gz -C "$work" pywb-2.10.0/sample_archive
mkdir -p data/pywb
rm -rf "$target.partial" "$target"
mv "$work"/pywb-2.10.0/sample_archive "$target.partial"
mv "$target.partial" "$target"
echo "web fixtures: $target" >&2
