#!/usr/bin/env bash
# Keel against llama.cpp on one GGUF file, both running it as it is (its own quantized formats):
#   - perplexity: llama-perplexity -c LEN --chunks CHUNKS on TEXT, and keel eval --llama-cpp-scoring on the same text;
#   - greedy text: llama-simple -n 32 and keel generate --temperature 0 from each of a few prompts;
#   - decode speed: llama-bench tg64 (empty context) and keel generate of 64 tokens after a one-token prompt;
#   - prefill speed: keel generate's prompt rate on the first 100 words of TEXT, and llama-bench's on a prompt of as
#     many tokens (Keel's speed runs with --warmup: an untimed run first, as llama-bench warms up);
#   - peak memory (max RSS) of llama-simple and of keel generate, each generating 64 tokens.
# Speeds alternate the two tools, ROUNDS times each (2 threads both). Decode is memory-bound: the bandwidth column is
# the file's tensor bytes per token × tokens/s.
# Usage: scripts/bench/gguf_vs_llama_cpp.sh FILE.gguf TEXT [LEN] [CHUNKS] [ROUNDS]   (LEN 256, CHUNKS 16, ROUNDS 3)
#   llama.cpp from scripts/build_llama_cpp.sh; keel from .build/release/keel.
set -euo pipefail
cd "$(dirname "$0")/../.."
file=${1:?usage: gguf_vs_llama_cpp.sh FILE.gguf TEXT [LEN] [CHUNKS] [ROUNDS]}
text=${2:?usage: gguf_vs_llama_cpp.sh FILE.gguf TEXT [LEN] [CHUNKS] [ROUNDS]}
length=${3:-256}
chunks=${4:-16}
rounds=${5:-3}
keel=.build/release/keel
# Keel takes the 2 threads llama.cpp is given (-t 2), whatever the machine has.
export KEEL_THREADS=2
bin=$(bash scripts/build_llama_cpp.sh 2>/dev/null | tail -n 1)
python=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "file: $file ($(stat -c %s "$file") bytes); CPU: $(lscpu | sed -n 's/^Model name: *//p'), 2 threads"
theirs=$("$bin/llama-perplexity" -m "$file" -f "$text" -c "$length" -b "$length" --chunks "$chunks" -t 2 2>&1 \
    | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p')
ours=$("$keel" eval --checkpoint "$file" "$text" --seq-len "$length" --max-windows "$chunks" --llama-cpp-scoring --json 2>/dev/null \
    | "$python" -c 'import json, sys; print("%.4f" % json.load(sys.stdin)["perplexity"])')
echo "perplexity (-c $length, $chunks chunks): llama.cpp $theirs, Keel $ours ($("$python" -c 'import sys; print("%+.3f%%" % ((float(sys.argv[2]) / float(sys.argv[1]) - 1) * 100))' "$theirs" "$ours"))"

for prompt in "The capital of France is" "Once upon a time" "def fibonacci(n):" "The three primary colors are"; do
    their_text=$("$bin/llama-simple" -m "$file" -n 32 "$prompt" 2>/dev/null)
    our_text=$("$keel" generate --checkpoint "$file" --prompt "$prompt" --max-tokens 32 --temperature 0 2>/dev/null)
    "$python" -c 'import os, sys; a, b, p = sys.argv[1], sys.argv[2], sys.argv[3]; n = len(os.path.commonprefix([a, b])) - len(p); print("greedy %r: the same for %d of %d characters%s" % (p, n, len(b) - len(p), "" if a == b else "; llama.cpp: %r, Keel: %r" % (a[len(p):], b[len(p):])))' \
        "$their_text" "$our_text" "$prompt"
done

# A prompt of 128 tokens of TEXT.
prompt128=$("$python" - "$text" <<'PY'
import sys
words = open(sys.argv[1], encoding="utf-8", errors="replace").read().split()
print(" ".join(words[:100]))
PY
)
bytes=$("$python" -c 'import gguf, sys; print(sum(int(t.n_bytes) for t in gguf.GGUFReader(sys.argv[1]).tensors))' "$file")
# The prompt's length in the model's tokens, for llama-bench's prompt of as many.
count=$("$keel" generate --checkpoint "$file" --prompt "$prompt128" --max-tokens 1 --temperature 0 2>&1 >/dev/null \
    | sed -n 's/^\([0-9]*\) prompt tokens in.*/\1/p')
decode=(); prefill=(); their_decode=(); their_prefill=()
for _ in $(seq 1 "$rounds"); do
    line=$("$bin/llama-bench" -m "$file" -p "$count" -n 64 -t 2 -r 1 2>/dev/null)
    their_prefill+=("$(echo "$line" | awk -F'|' -v test="pp$count" '$0 ~ test { gsub(/ /, "", $(NF-1)); split($(NF-1), v, "±"); print v[1] }')")
    their_decode+=("$(echo "$line" | awk -F'|' '/tg64/ { gsub(/ /, "", $(NF-1)); split($(NF-1), v, "±"); print v[1] }')")
    decode+=("$("$keel" generate --checkpoint "$file" --prompt "The" --max-tokens 64 --temperature 0 --warmup 2>&1 >/dev/null \
        | sed -n 's/.*generated in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1/p')")
    prefill+=("$("$keel" generate --checkpoint "$file" --prompt "$prompt128" --max-tokens 1 --temperature 0 --warmup 2>&1 >/dev/null \
        | sed -n 's/^[0-9]* prompt tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1/p')")
done
echo "decode tokens/s: llama.cpp ${their_decode[*]}; Keel ${decode[*]}"
echo "prefill tokens/s ($count-token prompt): llama.cpp ${their_prefill[*]}; Keel ${prefill[*]}"
"$python" -c 'import statistics as s, sys; b = int(sys.argv[1]); t = [float(x) for x in sys.argv[2].split()]; k = [float(x) for x in sys.argv[3].split()]; print("decode ratio (median): %.2fx; bandwidth: llama.cpp %.1f GB/s, Keel %.1f GB/s (%d tensor bytes a token)" % (s.median(k) / s.median(t), b * s.median(t) / 1e9, b * s.median(k) / 1e9, b))' \
    "$bytes" "${their_decode[*]}" "${decode[*]}"
"$python" -c 'import statistics as s, sys; t = [float(x) for x in sys.argv[1].split()]; k = [float(x) for x in sys.argv[2].split()]; print("prefill ratio (median): %.2fx" % (s.median(k) / s.median(t)))' \
    "${their_prefill[*]}" "${prefill[*]}"

their_rss=$( { /usr/bin/time -f %M "$bin/llama-simple" -m "$file" -n 64 "The" >/dev/null 2>"$work/time"; } ; tail -n 1 "$work/time")
our_rss=$( { /usr/bin/time -f %M "$keel" generate --checkpoint "$file" --prompt "The" --max-tokens 64 >/dev/null 2>"$work/time"; } ; tail -n 1 "$work/time")
echo "peak memory generating 64 tokens: llama.cpp $((their_rss / 1024)) MiB, Keel $((our_rss / 1024)) MiB"
