#!/usr/bin/env bash
# Fetches the real crawl the WARC tests read: pywb's sample archive (iana.warc.gz, 343 records, and its CDXJ index
# of URL, digest, length and offset per record), shipped in the PyPI source distribution pywb 2.10.0, into
# data/pywb/sample_archive/; and the language model `keel data filter` uses: py3langid 0.4.0's model.npz.xz
# (BSD-3-Clause), from its PyPI wheel, into data/langid/. Uses the pip of .venv (scripts/setup.sh makes it).
# Skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f data/langid/model.npz.xz ]; then
    echo "web fixtures: downloading py3langid==0.4.0 (wheel) from PyPI for its language model" >&2
    .venv/bin/python3 -m pip download --disable-pip-version-check --quiet --only-binary :all: --no-deps --dest "$work" py3langid==0.4.0
    mkdir -p data/langid
    .venv/bin/python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("py3langid/data/model.npz.xz"))' \
        "$work"/py3langid-0.4.0-*.whl data/langid/model.npz.xz.partial
    mv data/langid/model.npz.xz.partial data/langid/model.npz.xz
    echo "web fixtures: data/langid/model.npz.xz" >&2
fi
target=data/pywb/sample_archive
if [ -f "$target/warcs/iana.warc.gz" ] && [ -f "$target/cdxj/iana.cdxj" ]; then
    exit 0
fi
echo "web fixtures: downloading pywb==2.10.0 (source) from PyPI" >&2
.venv/bin/python3 -m pip download --disable-pip-version-check --quiet --no-binary :all: --no-deps --dest "$work" pywb==2.10.0
tar -xzf "$work"/pywb-2.10.0.tar.gz -C "$work" pywb-2.10.0/sample_archive
mkdir -p data/pywb
rm -rf "$target.partial" "$target"
mv "$work"/pywb-2.10.0/sample_archive "$target.partial"
mv "$target.partial" "$target"
echo "web fixtures: $target" >&2
