#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-cli, llama-simple, llama-perplexity, llama-quantize, llama-bench)
# for comparing Keel against llama.cpp, into a cache directory outside the repository:
#   scripts/build_llama_cpp.sh [CACHE_DIR]      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/keel/llama.cpp)
# The source is the llama.cpp that the PyPI source distribution of llama-cpp-python 0.3.16 vendors
# (vendor/llama.cpp, upstream commit 4227c9be, 2025-08-14), fetched with the pip of .venv (scripts/setup.sh
# makes it). Built CPU-only with Debian's cmake (installed if missing), statically, without libcurl (no
# network but PyPI and Debian), optimised for this machine (GGML_NATIVE). Took 2 minutes on 2 Zen 5 cores;
# run it under `nice -n 19` beside other builds. Writes CACHE_DIR/bin/<tools> and CACHE_DIR/VERSION; a failed
# build resumes from CACHE_DIR/src. Skips everything when the tools are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.3.16
sdist_sha256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
tools=(llama-cli llama-simple llama-perplexity llama-quantize llama-bench)
required=(llama-perplexity llama-quantize)   # and at least one of llama-cli, llama-simple
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/keel/llama.cpp}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

built() {   # VERSION is written last, once the tools are in place
    [ -f "$cache/VERSION" ] || return 1
    for tool in "${required[@]}"; do
        [ -x "$cache/bin/$tool" ] || return 1
    done
    [ -x "$cache/bin/llama-cli" ] || [ -x "$cache/bin/llama-simple" ]
}
if built; then
    echo "llama.cpp: already built in $cache/bin ($(tr '\n' ' ' < "$cache/VERSION" 2>/dev/null || true))" >&2
    echo "$cache/bin"
    exit 0
fi

bash scripts/apt_install.sh llama.cpp cmake g++ make

src="$cache/src"
sdist="$src/llama_cpp_python-$version.tar.gz"
mkdir -p "$src"
if [ ! -f "$sdist" ]; then
    # --no-binary for this package only: with :all:, pip would also build the build backend's own
    # dependencies (cmake, ninja) from source just to read the metadata.
    echo "llama.cpp: downloading llama-cpp-python==$version (source) from PyPI" >&2
    .venv/bin/python3 -m pip download --disable-pip-version-check --quiet --no-binary llama-cpp-python --no-deps \
        --dest "$src/download" "llama-cpp-python==$version"
    mv "$src/download/llama_cpp_python-$version.tar.gz" "$sdist"
    rm -rf "$src/download"
fi
echo "$sdist_sha256  $sdist" | sha256sum --check --quiet -
tree="$src/llama_cpp_python-$version"
llama="$tree/vendor/llama.cpp"
if [ ! -f "$llama/CMakeLists.txt" ]; then
    echo "llama.cpp: extracting $(basename "$sdist")" >&2
    rm -rf "$tree"
    tar -xzf "$sdist" -C "$src"
fi
[ -f "$llama/CMakeLists.txt" ] || { echo "llama.cpp: no vendor/llama.cpp in $(basename "$sdist")" >&2; exit 1; }
# The sdist keeps the submodule's .git file, pointing at a repository it does not ship; without git the
# build cannot number itself, so pass it the commit llama-cpp-python's CHANGELOG names for this release.
rm -f "$llama/.git"
commit=$(awk -v heading="## [$version]" '$0 == heading { on = 1; next } on && /^## / { exit }
    on && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }' "$tree/CHANGELOG.md")
short=${commit:0:7}

echo "llama.cpp: configuring $llama (commit ${commit:-unknown})" >&2
build="$llama/build"
nice -n 19 cmake -S "$llama" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_SERVER=OFF ${short:+-DLLAMA_BUILD_COMMIT=$short} >"$src/configure.log" 2>&1 \
    || { tail -n 30 "$src/configure.log" >&2; exit 1; }

targets=()
available=$(cmake --build "$build" --target help 2>/dev/null)
for tool in "${tools[@]}"; do
    grep -qw -- "$tool" <<<"$available" && targets+=("$tool")
done
echo "llama.cpp: building ${targets[*]} (2 jobs; log in $src/build.log)" >&2
start=$SECONDS
nice -n 19 cmake --build "$build" -j 2 --target "${targets[@]}" >"$src/build.log" 2>&1 \
    || { tail -n 40 "$src/build.log" >&2; exit 1; }
echo "llama.cpp: built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s" >&2

mkdir -p "$cache/bin"
for tool in "${targets[@]}"; do
    install -m 755 "$build/bin/$tool" "$cache/bin/$tool"
done
for tool in "${required[@]}"; do
    [ -x "$cache/bin/$tool" ] || { echo "llama.cpp: $tool was not built" >&2; exit 1; }
done
[ -x "$cache/bin/llama-cli" ] || [ -x "$cache/bin/llama-simple" ] || { echo "llama.cpp: neither llama-cli nor llama-simple was built" >&2; exit 1; }
{
    echo "llama-cpp-python $version"
    echo "llama.cpp ${commit:-unknown}"
} > "$cache/VERSION"
rm -rf "$src"
echo "llama.cpp: ${targets[*]} in $cache/bin" >&2
echo "$cache/bin"
