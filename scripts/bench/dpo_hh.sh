#!/usr/bin/env bash
# DPO on human preferences: RUN optimised on HH-RLHF pairs against its own weights, and measured on held-out pairs
# — the loss, how often the implicit reward β(log π − log ρ) prefers the chosen answer, and the margin — before the
# first step, every 20 steps and after the last.
#
#   bash scripts/bench/dpo_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS] [LR]
#
# HH.jsonl.gz: Anthropic's HH-RLHF (MIT), e.g. harmless-base/test.jsonl.gz — red-teaming dialogues, for measuring
# only. The first TRAIN_PAIRS (default 600) of the pairs reward_hh.sh trains on (every 7th pair of the file is left
# out), every 10th of them held out by keel dpo; STEPS (default 60) steps of 8 pairs, sequences cut to 193 tokens,
# β 0.1, constant lr LR (default 1e-6). Writes OUT/pairs.jsonl and the run in OUT/dpo.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: dpo_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS] [LR]}
data=${2:?usage: dpo_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS] [LR]}
out=${3:?usage: dpo_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS] [LR]}
pairs=${4:-600}
steps=${5:-60}
lr=${6:-1e-6}
keel=${KEEL:-.build/release/keel}
[ -x "$keel" ] || { echo "dpo_hh: build keel first (swift build -c release), or set KEEL" >&2; exit 1; }
mkdir -p "$out"
python3 - "$data" "$out/pairs.jsonl" "$pairs" <<'PY'
import gzip, sys
lines = [l for l in gzip.open(sys.argv[1], "rt", encoding="utf-8") if l.strip()]
open(sys.argv[2], "w").writelines([l for i, l in enumerate(lines) if i % 7 != 0][:int(sys.argv[3])])
PY
"$keel" dpo --init-from "$run" --data "$out/pairs.jsonl" --out "$out/dpo" --beta 0.1 --set training.batch_size=8 \
    --set training.steps="$steps" --set training.seq_len=192 --set training.lr="$lr" --set training.min_lr="$lr" \
    --set training.eval_every=20 --set logging.every=5
