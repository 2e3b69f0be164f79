#!/usr/bin/env bash
# Two pipeline stages cut by compute (parallel.stage_balance = "compute", the default) against cut by parameters,
# on a model whose output projection is heavy: GPT-2 12 blocks × 256 with a 50,304-token vocabulary at sequence 128,
# where the projection costs 2 · 256 · 50,304 = 25.8M FLOPs per token against a block's 1.7M. Each stage is one
# process with one thread (KEEL_THREADS=1), 1F1B over 8 micro-batches of 4 sequences; the two cuts alternate for
# ROUNDS rounds; each run's step time is the median of its steps after the first two.
# Usage: scripts/bench/stage_balance.sh [ROUNDS] [STEPS]      (default 3 rounds of 8 steps)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
steps=${2:-8}
bash scripts/fetch_corpus.sh >/dev/null
swift build -c release --product keel >/dev/null
keel=.build/release/keel
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
export KEEL_THREADS=1
train=(--config configs/demo-byte.toml --set model.n_layer=12 --set model.n_head=4 --set model.d_model=256
  --set model.vocab_size=50304 --set model.max_seq_len=128 --set training.seq_len=128 --set training.batch_size=4
  --set parallel.pp=2 --set parallel.micro_batches=8 --set training.steps="$steps" --set training.eval_every=0
  --set checkpoint.every=0 --set logging.every=1)
grep -m1 'model name' /proc/cpuinfo
for round in $(seq 1 "$rounds"); do
  for balance in compute parameters; do
    "${mpi[@]}" $keel train "${train[@]}" --set "parallel.stage_balance=\"$balance\"" --out "$w/$balance-$round" \
      >"$w/$balance-$round.log" 2>&1
  done
done
python3 - "$w" "$rounds" <<'PY'
import json, re, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
def step(run):
    records = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl") if '"tokens_per_s"' in l]
    return statistics.median(8 * 4 * 128 / r["tokens_per_s"] for r in records[2:])
for balance in ("compute", "parameters"):
    stages = re.search(r"blocks by stage ([^;]*);", open(f"{w}/{balance}-1.log").read()).group(1)
    print(f"{balance:10} blocks by stage {stages}")
ratios = []
for r in range(1, rounds + 1):
    c, p = step(f"compute-{r}"), step(f"parameters-{r}")
    ratios.append(p / c)
    print(f"round {r}: step {c:.3f} s by compute, {p:.3f} s by parameters: compute {p / c:.2f}x faster")
print(f"median: compute {statistics.median(ratios):.2f}x faster ({min(ratios):.2f}-{max(ratios):.2f}x)")
PY
