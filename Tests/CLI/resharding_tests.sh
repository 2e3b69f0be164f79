#!/usr/bin/env bash
# Resharding under OpenMPI's mpirun: a checkpoint written in one layout — dp 4 with ZeRO-1, pp 2 × dp 2 with
# ZeRO-1, tp 2 × dp 2 with ZeRO-3 — resumes on one process and in each of the other two layouts, and every
# resumed run logs the per-step losses of the single process's uninterrupted run (1e-5 relative). Every layout
# trains on the same global batch (4 sequences per micro-batch, 2 micro-batches), its replicas sharing it. The
# pp 2 × dp 2 run compresses its checkpoints with zstd. The vocabulary is the byte tokenizer's 257 ids, which two
# tensor ranks do not divide: a run written at tp = 1 resumes at tp = 2 (its rows cut 128 and 129) and back.
# Usage: Tests/CLI/resharding_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: resharding_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

config "$work/llama.toml" llama 4
common=(--config "$work/llama.toml" "${layouts[@]}" --set model.n_kv_head=2)

# Each layout as "pp tp dp ZeRO-stage".
declare -A layout=([one]="1 1 1 0" [dp4-zero1]="1 1 4 1" [pp2-dp2-zero1]="2 1 2 1" [tp2-dp2-zero3]="1 2 2 3")

# launch LAYOUT keel train ARGS...: the command running ARGS in LAYOUT, its settings appended.
launch() {
    local pp tp dp zero
    read -r pp tp dp zero <<<"${layout[$1]}"
    shift
    local settings=(--set parallel.pp=$pp --set parallel.tp=$tp --set distributed.zero_stage=$zero
                    --set training.batch_size=$((4 / dp)))
    if [ $((pp * tp * dp)) -eq 1 ]; then "$@" "${settings[@]}"; else "${mpi[@]}" -np $((pp * tp * dp)) "$@" "${settings[@]}"; fi
}

declare -A extra=([pp2-dp2-zero1]="--set checkpoint.zstd_level=3")

run "one process, uninterrupted" launch one "$keel" train "${common[@]}" --out "$work/reference"
for writer in dp4-zero1 pp2-dp2-zero1 tp2-dp2-zero3; do
    # shellcheck disable=SC2086 # the extra settings are words
    run "$writer: first half" launch $writer "$keel" train "${common[@]}" --out "$work/$writer" --stop-after 15 \
        ${extra[$writer]:-} || continue
    for reader in one dp4-zero1 pp2-dp2-zero1 tp2-dp2-zero3; do
        [ $reader = $writer ] && continue
        cp -r "$work/$writer" "$work/$writer-to-$reader"
        run "$writer → $reader: second half" launch $reader "$keel" train --resume --out "$work/$writer-to-$reader" \
            && same_losses "written by $writer, resumed by $reader: the losses of one uninterrupted process" \
                "$work/reference" "$work/$writer-to-$reader" $steps
    done
done

echo "resharding tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
