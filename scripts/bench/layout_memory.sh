#!/usr/bin/env bash
# Peak resident memory per rank of one model (GPT-2, 12 blocks × 384, 21.4 M parameters: 327 MiB of fp32 weights,
# gradients and AdamW moments) trained for 2 steps on one process, and on two with data parallelism, ZeRO-1, -2
# and -3, and tensor parallelism (tp = 2, with and without sequence parallelism), from /usr/bin/time around
# each rank. Rank 1 shows what the layout itself holds (when the table in docs/benchmarks.md was measured, rank 0
# also gathered and wrote the whole checkpoint; checkpoints are sharded since). Buckets of 4 MB, as the table in
# docs/benchmarks.md was measured (ZeRO-2 and -3 hold up to three buckets of gradients in flight).
# Usage: scripts/bench/layout_memory.sh        Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v /usr/bin/time >/dev/null || { echo "layout_memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
bash scripts/fetch_corpus.sh >/dev/null
swift build -c release --product keel >/dev/null
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
common=(--config configs/demo-byte.toml --set model.n_layer=12 --set model.n_head=6 --set model.d_model=384 --set model.max_seq_len=64
  --set model.vocab_size=258 --set training.seq_len=64 --set training.batch_size=1 --set training.steps=2 --set training.eval_every=0
  --set training.eval_batches=1 --set checkpoint.every=0 --set distributed.bucket_mb=4)
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
KEEL_THREADS=1 /usr/bin/time -f %M -o "$w/one.0" .build/release/keel train "${common[@]}" --out "$w/one" >/dev/null 2>&1
for layout in "dp --set distributed.zero_stage=0" "zero1 --set distributed.zero_stage=1" "zero2 --set distributed.zero_stage=2" \
              "zero3 --set distributed.zero_stage=3" "tp2 --set parallel.tp=2" "tp2sp --set parallel.tp=2 --set parallel.sequence_parallel=true"; do
  read -r name args <<<"$layout"
  KEEL_THREADS=1 "${mpi[@]}" sh -c '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$w/$name" .build/release/keel train "${common[@]}" --out "$w/run-$name" $args >/dev/null 2>&1
done
for name in one dp zero1 zero2 zero3 tp2 tp2sp; do
    line="$name: rank 0 $(($(cat "$w/$name.0") / 1024)) MiB"
    [ -f "$w/$name.1" ] && line+=", rank 1 $(($(cat "$w/$name.1") / 1024)) MiB"
    echo "$line"
done
