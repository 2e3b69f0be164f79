#!/usr/bin/env bash
# Runs TRL's DPOTrainer and `keel dpo` on the same tiny Llama, pairs and settings, and compares them step by step
# (the comparison the CLI tests make against the stored figures of Tests/Reference/dpo_trl, made afresh):
#
#   bash scripts/hf_check/dpo_vs_trl.sh [OUT]      (.venv-hf with trl==1.16.0: see README.md here; keel built)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-$(mktemp -d)}
keel=${KEEL:-.build/debug/keel}
[ -x "$keel" ] || { echo "dpo_vs_trl: build keel first (swift build), or set KEEL" >&2; exit 1; }
.venv-hf/bin/python scripts/hf_check/make_dpo_fixture.py "$out"
"$keel" import hf "$out/model" --out "$out/keel-base" >/dev/null
for case in text:text:sigmoid:0.1:1e-3 chat:chat:sigmoid:0.1:1e-3 ipo:text:ipo:0.5:1e-4; do
    IFS=: read -r name pairs loss beta lr <<<"$case"
    "$keel" dpo --init-from "$out/keel-base" --data "$out/pairs_$pairs.jsonl" --out "$out/keel-$name" --loss "$loss" \
        --beta "$beta" --no-shuffle --set training.batch_size=2 --set training.grad_accum=2 --set training.steps=10 \
        --set training.seq_len=63 --set data.val_fraction=0 --set training.lr="$lr" --set training.min_lr="$lr" 2>/dev/null >/dev/null
    echo "$name ($loss):"
    python3 Tests/Reference/compare_dpo.py "$out/trl_$name.json" "$out/keel-$name/metrics.jsonl" | tail -1
done
