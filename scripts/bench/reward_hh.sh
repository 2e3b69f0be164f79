#!/usr/bin/env bash
# Reward models of human preferences, and how far they agree: three reward models trained from RUN on the same
# HH-RLHF pairs — seed 1, seed 2 (another head), and seed 1 with the pairs in another order — then measured on
# held-out pairs with `keel reward eval` (accuracy, calibration, length bias, agreement, the ensemble).
#
#   bash scripts/bench/reward_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS]
#
# HH.jsonl.gz: Anthropic's HH-RLHF (MIT), e.g. harmless-base/test.jsonl.gz — red-teaming dialogues, for measuring
# only. Every 7th pair is held out; the first TRAIN_PAIRS (default 600) of the others are trained on, STEPS (default
# 75) steps of 8 pairs, pairs with a sequence over 192 tokens dropped (as TRL drops them), learning rate 2e-5
# after 5 warm-up steps. Writes OUT/train.jsonl,
# OUT/heldout.jsonl, OUT/seed1, OUT/seed2, OUT/order2 and OUT/report.txt (and report.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: reward_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS]}
data=${2:?usage: reward_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS]}
out=${3:?usage: reward_hh.sh RUN HH.jsonl.gz OUT [TRAIN_PAIRS] [STEPS]}
pairs=${4:-600}
steps=${5:-75}
keel=${KEEL:-.build/release/keel}
[ -x "$keel" ] || { echo "reward_hh: build keel first (swift build -c release), or set KEEL" >&2; exit 1; }
mkdir -p "$out"
python3 - "$data" "$out" "$pairs" <<'PY'
import gzip, sys
source, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l for l in gzip.open(source, "rt", encoding="utf-8") if l.strip()]
held = [l for i, l in enumerate(lines) if i % 7 == 0]
train = [l for i, l in enumerate(lines) if i % 7 != 0][:count]
open(f"{out}/heldout.jsonl", "w").writelines(held)
open(f"{out}/train.jsonl", "w").writelines(train)
print(f"reward_hh: {len(train)} training pairs, {len(held)} held out", file=sys.stderr)
PY
settings=(--set training.batch_size=8 --set training.steps="$steps" --set training.seq_len=192 --set training.lr=2e-5
          --set training.min_lr=2e-6 --set training.warmup_steps=5 --set data.val_fraction=0 --set logging.every=5)
for model in seed1:1: seed2:2: order2:1:2; do
    IFS=: read -r name seed order <<<"$model"
    [ -d "$out/$name/checkpoints" ] && continue
    "$keel" reward train --init-from "$run" --data "$out/train.jsonl" --out "$out/$name" "${settings[@]}" \
        --set training.seed="$seed" ${order:+--order-seed "$order"}
done
"$keel" reward eval --model "$out/seed1" --model "$out/seed2" --model "$out/order2" --data "$out/heldout.jsonl" \
    --seq-len 192 --save "$out/report.json" | tee "$out/report.txt"
