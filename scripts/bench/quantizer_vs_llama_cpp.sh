#!/usr/bin/env bash
# Keel's quantizer against llama.cpp's, judged by llama.cpp: a run exported to GGUF in f32, then for each format the
# file `keel quantize` writes and the file `llama-quantize` makes from the f32 one, each scored by
#   llama-perplexity --kl-divergence against the f32 file's logits on TEXT: perplexity, mean and 99th-percentile KL
#   divergence from f32, and how often the top token is the same.
# Usage: scripts/bench/quantizer_vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS]      (LEN 512, CHUNKS 16)
#   RUN: a Llama or GPT-2 run or checkpoint (an import too); llama.cpp from scripts/build_llama_cpp.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: quantizer_vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS]}
text=${2:?usage: quantizer_vs_llama_cpp.sh RUN TEXT [LEN] [CHUNKS]}
length=${3:-512}
chunks=${4:-16}
keel=.build/release/keel
bin=$(bash scripts/build_llama_cpp.sh 2>/dev/null | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$keel" export gguf --checkpoint "$run" --type f32 --out "$work/f32.gguf" >/dev/null
"$bin/llama-perplexity" -m "$work/f32.gguf" -f "$text" -c "$length" -b "$length" --chunks "$chunks" -t 2 \
    --kl-divergence-base "$work/base.kld" >"$work/base.log" 2>&1
base=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/base.log")
echo "f32 perplexity (llama-perplexity -c $length, $chunks chunks): $base"

# The figures of one file: perplexity, mean KL, 99th-percentile KL, same top token.
score() {
    "$bin/llama-perplexity" -m "$1" -f "$text" -c "$length" -b "$length" --chunks "$chunks" -t 2 \
        --kl-divergence-base "$work/base.kld" --kl-divergence >"$work/score.log" 2>&1
    python3 - "$work/score.log" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
def value(label):
    match = re.search(r"^" + re.escape(label) + r"\s*:\s*([-0-9.e+]+)", log, re.M)
    return match.group(1) if match else "?"
print("%s | %s | %s | %s%%" % (value("Mean PPL(Q)"), value("Mean    KLD"), value("99.0%   KLD"), value("Same top p")))
PY
}

echo "| format | quantizer | perplexity | KL mean | KL 99th percentile | same top token |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for type in q8_0 q4_0 q4_1 q5_0 q4_k; do
    if "$keel" quantize --checkpoint "$run" --type "$type" --out "$work/keel-$type" >/dev/null 2>"$work/err"; then
        echo "| $type | Keel | $(score "$work/keel-$type/model.gguf") |"
    else
        echo "| $type | Keel | $(tail -n 1 "$work/err") | | | |"
    fi
    # Keel's q4_k is Q4_K throughout (Q5_0 where rows are not whole blocks, the head Q8_0); llama.cpp's Q4_K_S and
    # Q4_K_M put some tensors in Q5_K or Q6_K as well.
    theirs=${type^^}
    [ "$type" = q4_k ] && theirs="Q4_K_S Q4_K_M"
    for name in $theirs; do
        if "$bin/llama-quantize" "$work/f32.gguf" "$work/llama-$name.gguf" "$name" 2 >/dev/null 2>&1; then
            echo "| $type | llama.cpp $name | $(score "$work/llama-$name.gguf") |"
        else
            echo "| $type | llama.cpp $name | (llama-quantize failed) | | | |"
        fi
    done
done
