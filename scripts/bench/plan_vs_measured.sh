#!/usr/bin/env bash
# keel plan's predictions for the layouts Keel runs on this machine against their measured step times.
# Each device is one process with one thread (KEEL_THREADS=1); the planner is given this CPU as `keel bench
# --machine` measures it (Keel's gemm rate on one thread; STREAM bandwidth and memory shared by the processes) and
# the link between two processes as `keel collectives --link` measures it. Model: GPT-2, 8 blocks × 512, byte vocabulary, sequence 256,
# 16 sequences per step in micro-batches of 4. Each layout trains STEPS steps (default 8); its step time is the
# median of the steps after the first two.
# Usage: scripts/bench/plan_vs_measured.sh [STEPS]      (prints a table; docs/planner.md has one)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-8}
bash scripts/fetch_corpus.sh >/dev/null
swift build -c release --product keel >/dev/null
keel=.build/release/keel
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
export KEEL_THREADS=1

link=$("${mpi[@]}" $keel collectives --sizes "" --link | grep '^for keel plan:' | sed 's/^for keel plan: //')
echo "link between two processes: $link"
one=$($keel bench --machine --processes 1 | grep '^for keel plan:' | sed 's/^for keel plan: //')
two=$($keel bench --machine --processes 2 | grep '^for keel plan:' | sed 's/^for keel plan: //')
echo "one process: $one"
echo "each of two processes: $two"
model=(--set model.arch='"gpt2"' --set model.n_layer=8 --set model.n_head=8 --set model.d_model=512 --set model.vocab_size=258)
train=(--config configs/demo-byte.toml --set model.n_layer=8 --set model.n_head=8 --set model.d_model=512 --set model.max_seq_len=256
  --set training.seq_len=256 --set training.batch_size=4 --set training.steps="$steps" --set training.eval_every=0
  --set checkpoint.every=0 --set logging.every=1)

# name | processes | keel train settings | keel plan settings
layouts=(
  "one|1|--set training.grad_accum=4|--tp 1 --pp 1 --dp 1"
  "dp2|2|--set training.grad_accum=2|--tp 1 --pp 1 --dp 2 --set layout.zero=0"
  "zero1|2|--set training.grad_accum=2 --set distributed.zero_stage=1|--tp 1 --pp 1 --dp 2 --set layout.zero=1"
  "zero2|2|--set training.grad_accum=2 --set distributed.zero_stage=2|--tp 1 --pp 1 --dp 2 --set layout.zero=2"
  "zero3|2|--set training.grad_accum=2 --set distributed.zero_stage=3|--tp 1 --pp 1 --dp 2 --set layout.zero=3"
  "tp2|2|--set training.grad_accum=4 --set parallel.tp=2|--tp 2 --pp 1 --dp 1 --set layout.sequence_parallel=false"
  "tp2-sp|2|--set training.grad_accum=4 --set parallel.tp=2 --set parallel.sequence_parallel=true|--tp 2 --pp 1 --dp 1 --set layout.sequence_parallel=true"
  "pp2-1f1b|2|--set parallel.micro_batches=4 --set parallel.pp=2|--tp 1 --pp 2 --dp 1 --set layout.schedules=1f1b"
  "pp2-gpipe|2|--set parallel.micro_batches=4 --set parallel.pp=2 --set parallel.schedule=\"gpipe\"|--tp 1 --pp 2 --dp 1 --set layout.schedules=gpipe"
  "pp2-interleaved|2|--set parallel.micro_batches=4 --set parallel.pp=2 --set parallel.schedule=\"interleaved\"|--tp 1 --pp 2 --dp 1 --set layout.schedules=interleaved --set layout.max_virtual_stages=2"
  "pp2-zb-h1|2|--set parallel.micro_batches=4 --set parallel.pp=2 --set parallel.schedule=\"zb-h1\"|--tp 1 --pp 2 --dp 1 --set layout.schedules=zb-h1"
)
for entry in "${layouts[@]}"; do
  IFS='|' read -r name processes trainArgs planArgs <<<"$entry"
  if [ "$processes" = 1 ]; then
    eval "$keel train ${train[*]} $trainArgs --out $w/$name" >/dev/null 2>&1
  else
    eval "${mpi[*]} $keel train ${train[*]} $trainArgs --out $w/$name" >/dev/null 2>&1
  fi
  machine="$one"; [ "$processes" -gt 1 ] && machine="$two $link"
  eval "$keel plan ${model[*]} --seq-len 256 --global-batch 16 $machine --gpus $processes --gpus-per-node 2 \
    --set layout.micro_batch_size=4 --set layout.recompute=none --set assumptions.memory_headroom=0 $planArgs --top 1 --json" > "$w/$name.plan.json"
  echo "$name" >> "$w/names"
done
python3 - "$w" <<'PY'
import json, statistics, sys
w = sys.argv[1]
rows, errors = [], []
for name in open(f"{w}/names").read().split():
    records = [json.loads(l) for l in open(f"{w}/{name}/metrics.jsonl") if '"tokens_per_s"' in l]
    tokens = 16 * 256
    measured = statistics.median(tokens / r["tokens_per_s"] for r in records[2:])
    plan = json.load(open(f"{w}/{name}.plan.json"))
    best = plan["layouts"][0]
    predicted = best["time_seconds"]["step"]
    t = best["time_seconds"]
    parts = ", ".join(f"{k} {v*1e3:.0f}" for k, v in t.items() if k != "step" and v > 5e-4)
    errors.append(predicted / measured - 1)
    rows.append((name, best["name"], measured * 1e3, predicted * 1e3, errors[-1] * 100, parts))
print(f"{'layout':16} {'planned as':34} {'measured ms':>11} {'predicted ms':>12} {'error':>7}  predicted parts (ms)")
for r in rows:
    print(f"{r[0]:16} {r[1]:34} {r[2]:11.1f} {r[3]:12.1f} {r[4]:+6.1f}%  {r[5]}")
print(f"largest error {max(abs(e) for e in errors)*100:.1f}%, mean {statistics.mean(abs(e) for e in errors)*100:.1f}%")
PY
