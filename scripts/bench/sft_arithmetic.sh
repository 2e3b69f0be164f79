#!/usr/bin/env bash
# Supervised fine-tuning measured: a chat model's accuracy on held-out additions before and after `keel sft` on
# generated arithmetic conversations (scripts/gen/arithmetic_chat.py; no download), and the validation loss on the
# assistant's tokens. Accuracy: greedy replies (keel generate --chat --temperature 0) whose last number is the sum.
# Usage: scripts/bench/sft_arithmetic.sh RUN OUT [STEPS] [EXAMPLES] [DIGITS]   (STEPS 60, EXAMPLES 2000, DIGITS 2)
#   RUN: a chat model's run (an import: keel import gguf SmolLM2-135M-Instruct.Q4_1.gguf --out runs/smollm2);
#   OUT: the fine-tuned run's directory (created); keel from .build/release/keel.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: sft_arithmetic.sh RUN OUT [STEPS] [EXAMPLES] [DIGITS]}
out=${2:?usage: sft_arithmetic.sh RUN OUT [STEPS] [EXAMPLES] [DIGITS]}
steps=${3:-60}
examples=${4:-2000}
digits=${5:-2}
keel=.build/release/keel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/gen/arithmetic_chat.py "$work/train.jsonl" --count "$examples" --seed 1 --digits "$digits"
python3 scripts/gen/arithmetic_chat.py "$work/test.jsonl" --count 100 --seed 2 --digits "$digits" --prompts

# accuracy RUN: the share of the held-out problems whose greedy reply ends with the right sum.
accuracy() {
    local prompts=()
    while IFS= read -r line; do prompts+=(--prompt "$line"); done < <(python3 -c 'import json, sys; [print(json.loads(l)["prompt"]) for l in open(sys.argv[1])]' "$work/test.jsonl")
    "$keel" generate --checkpoint "$1" --chat --temperature 0 --max-tokens 24 --json "${prompts[@]}" 2>/dev/null >"$work/replies.jsonl"
    python3 - "$work/test.jsonl" "$work/replies.jsonl" <<'PY'
import json, re, sys
answers = [json.loads(l)["answer"] for l in open(sys.argv[1])]
replies = [json.loads(l)["text"] for l in open(sys.argv[2])]
right = sum(1 for answer, reply in zip(answers, replies) if (re.findall(r"-?\d+", reply.replace(",", "")) or [None])[-1] == answer)
print(f"{right}/{len(answers)} ({100 * right / len(answers):.0f}%); first reply: {replies[0]!r}")
PY
}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); $examples conversations of $digits-digit additions, $steps steps"
echo "before: $(accuracy "$run")"
"$keel" sft --init-from "$run" --data "$work/train.jsonl" --out "$out" --set training.steps="$steps" \
    --set training.batch_size=4 --set training.seq_len=128 --set training.lr=1e-4 --set training.warmup_steps=5 \
    --set training.eval_every="$steps" --set training.eval_batches=4 2>&1 | grep -E "^data:|validation loss|throughput" || true
echo "after: $(accuracy "$out")"
