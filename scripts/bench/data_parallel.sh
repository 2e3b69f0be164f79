#!/usr/bin/env bash
# Data-parallel step time against one process at equal work per rank, measured alternately in one run,
# with the share of gradient communication hidden behind the backward pass and peak memory per rank.
#
# Usage: scripts/bench/data_parallel.sh [ROUNDS] [STEPS]      (defaults: 3 rounds of 8 steps)
# Model: the `small` shape (6 layers × 384, vocabulary 50,304), GPT-2 and Llama, T=256, 8 sequences per
# rank, one kernel thread per process; data: the byte-level Shakespeare corpus (scripts/fetch_corpus.sh).
# Compares, per architecture: 1 process; DP=2; DP=2 with ZeRO-1. "Exposed" is the time a step waits for
# gradient communication after its backward pass (load imbalance between the ranks included); "hidden" is
# 1 − exposed / (the same buckets communicated back to back, timed by `keel collectives` in this run).
# Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
steps=${2:-8}
command -v /usr/bin/time >/dev/null || { echo "data_parallel.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
bash scripts/fetch_corpus.sh >/dev/null
swift build -c release >/dev/null
keel=.build/release/keel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/bench.toml" <<TOML
[model]
n_layer = 6
n_head = 6
d_model = 384
max_seq_len = 256
vocab_size = 50304
[data]
paths = ["data/shakespeare"]
val_fraction = 0.01
[training]
steps = $steps
batch_size = 8
seq_len = 256
eval_every = 0
eval_batches = 1
[logging]
every = 1
TOML
mpi=(mpirun -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
export KEEL_THREADS=1
# The 25 MB buckets communicated alone, for the "hidden" column.
"${mpi[@]}" "$keel" collectives --sizes 25 --iterations 10 >"$work/collectives.txt" 2>/dev/null
for round in $(seq 1 "$rounds"); do
    for arch in gpt2 llama; do
        for variant in single dp2 dp2-zero1; do
            out="$work/$arch-$variant-$round"
            train=("$keel" train --config "$work/bench.toml" --out "$out" --set model.arch="\"$arch\"")
            case $variant in
                single) /usr/bin/time -f "peak_rss_kb %M" -o "$out.rss0" "${train[@]}" ;;
                dp2) "${mpi[@]}" sh -c '/usr/bin/time -f "peak_rss_kb %M" -o "$0.rss$OMPI_COMM_WORLD_RANK" "$@"' "$out" "${train[@]}" ;;
                dp2-zero1) "${mpi[@]}" sh -c '/usr/bin/time -f "peak_rss_kb %M" -o "$0.rss$OMPI_COMM_WORLD_RANK" "$@"' "$out" \
                               "${train[@]}" --set distributed.zero_stage=1 ;;
            esac >/dev/null 2>&1
            echo "round $round: $arch $variant done" >&2
        done
    done
done
python3 - "$work" "$rounds" <<'PY'
import glob, json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
alone = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(all-reduce|reduce-scatter)\s+25\.0 MB\s+([0-9.]+) ms", open(f"{work}/collectives.txt").read(), re.M)}
print(f"25 MB bucket alone: all-reduce {alone['all-reduce']:.1f} ms, reduce-scatter {alone['reduce-scatter']:.1f} ms")
print()
print("| run | ms/step (median) | ratio to 1 process | tokens/s (all ranks) | buckets started during backward | exposed comm ms/step | hidden | peak RSS, rank 0 / rank 1 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for arch in ["gpt2", "llama"]:
  base = None
  for variant, ranks in [("single", 1), ("dp2", 2), ("dp2-zero1", 2)]:
    step_ms, early, exposed, rss, buckets = [], [], [], [], 0
    for r in range(1, rounds + 1):
        records = [json.loads(l) for l in open(f"{work}/{arch}-{variant}-{r}/metrics.jsonl") if '"loss"' in l]
        elapsed = [rec["elapsed_s"] for rec in records]
        # Step 1 includes warm-up (arena allocation, page faults): time steps 2..N.
        step_ms += [1000 * (b - a) for a, b in zip(elapsed[1:], elapsed[2:])]
        early += [rec.get("comm_overlapped_buckets", 0) for rec in records[1:]]
        exposed += [1000 * rec.get("comm_exposed_s", 0) for rec in records[1:]]
        buckets = records[-1].get("comm_buckets", 0)
        rss.append([int(open(f).read().split()[1]) / 1024 for f in sorted(glob.glob(f"{work}/{arch}-{variant}-{r}.rss*"))])
    median = statistics.median(step_ms)
    base = base or median
    tokens = ranks * 8 * 256 / median * 1000
    e = statistics.median(exposed)
    if ranks > 1:
        serial = buckets * alone["reduce-scatter" if "zero" in variant else "all-reduce"]
        comm = f"{statistics.median(early):.0f} of {buckets} | {e:.0f} | {100 * (1 - e / serial):.0f}% of {serial:.0f} ms"
    else:
        comm = "– | – | –"
    # Rank 0's peak includes gathering the whole optimizer state for the final checkpoint.
    peaks = " / ".join(f"{max(run[k] for run in rss):.0f}" for k in range(ranks))
    print(f"| {arch} {variant} | {median:.0f} | {median / base:.2f} | {tokens:.0f} | {comm} | {peaks} MB |")
PY
