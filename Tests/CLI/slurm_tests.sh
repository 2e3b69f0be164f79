#!/usr/bin/env bash
# keel launch inside a Slurm allocation, on a local one-machine Slurm that scripts/slurm_local.sh starts (root,
# Debian's slurm-wlm): the launcher is srun with PMIx; a 4-process pp 2 × dp 2 job logs the losses of the same job
# under mpirun; kill -9 of a random rank at a random step under --max-restarts is restarted by srun within the
# allocation, from the in-memory snapshot, and ends with the uninterrupted run's weights bit for bit.
# Usage: Tests/CLI/slurm_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: slurm_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

if ! bash "$here/../../scripts/slurm_local.sh" >"$work/err" 2>&1; then
    fail "a local Slurm starts (scripts/slurm_local.sh)"
    echo "slurm tests: $passed passed, $failed failed"
    exit 1
fi
pass "a local Slurm starts: $(sinfo -h -o '%P %D node(s) %c CPUs %t')"

config "$work/gpt2.toml" gpt2
args=(train --config "$work/gpt2.toml" --set training.steps=40 --set training.batch_size=1 --set parallel.pp=2
      --set parallel.micro_batches=2 --set checkpoint.every=20 --set checkpoint.snapshot_every=1)

if salloc -n 4 "$keel" launch --nproc 4 --dry-run -- "${args[@]}" --out "$work/x" >"$work/out" 2>"$work/err" \
    && grep -q "^launch: srun --ntasks 4 --mpi=pmix --kill-on-bad-exit=1 .*keel train " "$work/err"; then
    pass "inside an allocation keel launch starts the job with srun"
else
    fail "inside an allocation keel launch starts the job with srun"
fi

run "uninterrupted, under srun" salloc -n 4 "$keel" launch --nproc 4 -- "${args[@]}" --out "$work/srun-straight" \
    && run "uninterrupted, under mpirun" "$keel" launch --nproc 4 -- "${args[@]}" --out "$work/mpirun-straight" \
    && same_logged_losses "the job under srun logs the losses of the job under mpirun, as text" \
        "$work/mpirun-straight" "$work/srun-straight" 40

# Killed before step 20, the first checkpoint on disk, so that the newest state is always a snapshot.
rank=$((RANDOM % 4)) at=$((8 + RANDOM % 10))
salloc -n 4 "$keel" launch --nproc 4 --max-restarts 2 -- "${args[@]}" --out "$work/srun-killed" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/srun-killed" $at && kill -9 "$(rank_pid "$work/srun-killed" $rank SLURM_PROCID)"
wait $job
status=$?
final="checkpoints/step_00000040"
if [ $status -eq 0 ] && grep -q "^launch: the job failed .* restart 1 of 2 from the in-memory snapshot .*: [012] steps\? lost" "$work/err" \
    && grep -q "^launch: finished after 1 restart" "$work/err" \
    && same_files "$work/srun-straight/$final" "$work/srun-killed/$final" rank_0000{0,1,2,3}.safetensors; then
    pass "kill -9 of rank $rank after step $at under srun: restarted within the allocation, the same weights bit for bit ($(grep -o 'restart 1 of 2 from.*' "$work/err" | sed "s|$work/||"))"
else
    fail "kill -9 of rank $rank after step $at under srun: restarted within the allocation, the same weights (exit $status)"
fi

# A batch script's own commands are one process each, though Slurm tells them SLURM_PROCID=0 and the allocation's
# SLURM_NTASKS=4 (no step): a single keel train in it trains (it was refused, "Slurm variables say this job has 4
# processes but MPI sees 1").
printf '#!/bin/sh\n"%s" train --config "%s" --out "%s" --set training.steps=2 >"%s" 2>&1\necho $? >"%s"\n' \
    "$keel" "$work/gpt2.toml" "$work/batch-run" "$work/batch.err" "$work/batch.status" >"$work/batch.sh"
sbatch -n 4 -o /dev/null "$work/batch.sh" >/dev/null
for _ in $(seq 1 600); do [ -s "$work/batch.status" ] && break; sleep 0.2; done
if [ "$(cat "$work/batch.status" 2>/dev/null)" = 0 ] && [ -f "$work/batch-run/checkpoints/step_00000002/manifest.json" ]; then
    pass "a single keel train in a batch script of 4 tasks is one process and trains"
else
    fail "a single keel train in a batch script of 4 tasks is one process and trains (status '$(cat "$work/batch.status" 2>/dev/null)': $(tail -1 "$work/batch.err" 2>/dev/null))"
fi

echo "slurm tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
