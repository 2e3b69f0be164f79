#!/usr/bin/env bash
# Keel against llama.cpp on one Llama checkpoint: the checkpoint exported to GGUF in each type, and both running that
# file as it is (Keel: its blocks or halves, attention in llama.cpp's fp16 precision), then for each
#   - perplexity: llama-perplexity -c LEN on TEXT, and keel eval --llama-cpp-scoring on the same text (the same
#     windows, the same predictions counted);
#   - greedy text: llama-simple and keel generate --temperature 0 from the same prompt;
#   - decode speed: llama-bench tg64 (no prompt) and keel generate (its generated tokens per second); prefill speed:
#     llama-bench pp128 and keel generate's prompt rate on the first 127 characters of TEXT (127 tokens for a byte
#     vocabulary); Keel with --warmup (an untimed run first, as llama-bench warms up); alternated ROUNDS times (5 by
#     default); the table gives each one's median and their ratio.
# Usage: scripts/bench/vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS] [ROUNDS]     (LEN 128, CHUNKS 40 by default)
#   RUN: a Llama run or checkpoint whose widths hold whole blocks of each type (configs/quant.toml makes one);
#   TEXT: a text file; llama.cpp from scripts/build_llama_cpp.sh; keel from .build/release/keel.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS] [ROUNDS]}
text=${2:?usage: vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS] [ROUNDS]}
length=${3:-128}
chunks=${4:-40}
rounds=${5:-5}
keel=.build/release/keel
# Keel takes the 2 threads llama.cpp is given (-t 2), whatever the machine has.
export KEEL_THREADS=2
bin=$(bash scripts/build_llama_cpp.sh 2>/dev/null | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prompt="ROMEO:"

median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

prompt128=$(head -c 127 "$text")

echo "| type | llama.cpp perplexity | Keel perplexity | difference | greedy text agrees for | decode tokens/s, llama.cpp | Keel | Keel ÷ llama.cpp | prefill tokens/s, llama.cpp | Keel | Keel ÷ llama.cpp |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for type in f32 f16 q8_0 q4_0 q4_1 q5_0 q4_k; do
    "$keel" export gguf --checkpoint "$run" --type "$type" --out "$work/$type.gguf" >/dev/null
    theirs=$("$bin/llama-perplexity" -m "$work/$type.gguf" -f "$text" -c "$length" -b "$length" --chunks "$chunks" 2>&1 \
        | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p')
    ours=$("$keel" eval --checkpoint "$work/$type.gguf" "$text" --seq-len "$length" --max-windows "$chunks" --llama-cpp-scoring --json \
        2>/dev/null | python3 -c 'import json, sys; print("%.4f" % json.load(sys.stdin)["perplexity"])')
    their_text=$("$bin/llama-simple" -m "$work/$type.gguf" -n 32 "$prompt" 2>/dev/null)
    our_text=$("$keel" generate --checkpoint "$work/$type.gguf" --prompt "$prompt" --max-tokens 32 --temperature 0 2>/dev/null)
    agree=$(python3 -c 'import sys, os; a, b = sys.argv[1], sys.argv[2]; print(len(os.path.commonprefix([a, b])) - len(sys.argv[3]), "of", len(b) - len(sys.argv[3]), "characters")' \
        "$their_text" "$our_text" "$prompt")
    theirs_decode=() ours_decode=() theirs_prefill=() ours_prefill=()
    for _ in $(seq "$rounds"); do
        line=$("$bin/llama-bench" -m "$work/$type.gguf" -p 128 -n 64 -t 2 -r 1 2>/dev/null)
        theirs_prefill+=("$(echo "$line" | awk -F'|' '/pp128/ { gsub(/ /, "", $(NF-1)); split($(NF-1), v, "±"); print v[1] }')")
        theirs_decode+=("$(echo "$line" | awk -F'|' '/tg64/ { gsub(/ /, "", $(NF-1)); split($(NF-1), v, "±"); print v[1] }')")
        ours_decode+=("$("$keel" generate --checkpoint "$work/$type.gguf" --prompt "$prompt" --max-tokens 64 --temperature 0 --warmup 2>&1 >/dev/null \
            | sed -n 's/.*generated in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1/p')")
        ours_prefill+=("$("$keel" generate --checkpoint "$work/$type.gguf" --prompt "$prompt128" --max-tokens 1 --temperature 0 --warmup 2>&1 >/dev/null \
            | sed -n 's/^[0-9]* prompt tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1/p')")
    done
    difference=$(python3 -c 'import sys; print("%+.3f%%" % ((float(sys.argv[2]) / float(sys.argv[1]) - 1) * 100))' "$theirs" "$ours")
    row="| $type | $theirs | $ours | $difference | $agree"
    for pair in "${theirs_decode[*]}:${ours_decode[*]}" "${theirs_prefill[*]}:${ours_prefill[*]}"; do
        their_median=$(echo "${pair%%:*}" | median) our_median=$(echo "${pair#*:}" | median)
        row+=" | $their_median | $our_median | $(python3 -c 'import sys; print("%.2f×" % (float(sys.argv[2]) / float(sys.argv[1])))' "$their_median" "$our_median")"
    done
    echo "$row |"
done
