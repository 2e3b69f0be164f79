#!/usr/bin/env bash
# Peak resident memory of each pipeline rank under GPipe and 1F1B at m micro-batches, from /usr/bin/time around
# each rank of `keel pipeline-bench` (two ranks, one kernel thread each). GPipe keeps every micro-batch's
# activations until its backward pass; 1F1B at most p − rank of them; the script prints both ranks' peaks and
# the per-micro-batch activation memory their difference implies.
#
# Usage: scripts/bench/pipeline_memory.sh [MICRO_BATCHES] [pipeline-bench options...]   (default m = 8; model:
# pipeline-bench's default GPT-2 8 blocks × 512, micro-batches of 1 × 128 tokens)
# Needs /usr/bin/time (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/../.."
m=${1:-8}
shift $(($# > 0 ? 1 : 0))
command -v /usr/bin/time >/dev/null || { echo "pipeline_memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
swift build -c release --product keel >/dev/null
keel=.build/release/keel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)

declare -A peak
for schedule in gpipe 1f1b; do
    KEEL_THREADS=1 "${mpi[@]}" sh -c '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$work/$schedule" \
        "$keel" pipeline-bench --schedules $schedule --micro-batches "$m" --steps 2 --project "" "$@" >"$work/$schedule.txt"
    slots=$(awk 'NR == 3 { print $NF }' "$work/$schedule.txt")
    for rank in 0 1; do peak[$schedule.$rank]=$(($(cat "$work/$schedule.$rank") / 1024)); done
    printf '%-6s m = %-3s peak RSS: rank 0 %5d MiB, rank 1 %5d MiB; rank 0 held %s micro-batches at once\n' \
        "$schedule" "$m" "${peak[$schedule.0]}" "${peak[$schedule.1]}" "$slots"
done
# Rank 0 holds m micro-batches under GPipe and 2 under 1F1B (p = 2); rank 1 m and 1.
for rank in 0 1; do
    held=$((rank == 0 ? 2 : 1))
    if [ "$m" -gt "$held" ]; then
        echo "rank $rank: $(((peak[gpipe.$rank] - peak[1f1b.$rank]) / (m - held))) MiB per micro-batch of activations ((GPipe − 1F1B) / ($m − $held))"
    fi
done
