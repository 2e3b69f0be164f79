#!/usr/bin/env bash
# Runs that are interrupted, with real signals and real limits: SIGTERM (one process) and SIGUSR1 (one rank of a
# 4-process job) finish the step, checkpoint and exit 0, and --resume then logs the uninterrupted run's losses;
# a second Ctrl-C exits at once leaving no partial checkpoint; kill -9 inside a checkpoint write loses nothing;
# `keel launch --max-restarts` recovers a 4-process job from kill -9 of a random rank at a random step, ending
# with the uninterrupted run's weights bit for bit, and a job on two machines (stood for by this one) loses one
# machine's memory and resumes from the copies on the other; a write that hits a file-size limit stops with one clear
# error and no partial checkpoint.
# Usage: Tests/CLI/interruption_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: interruption_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

config "$work/gpt2.toml" gpt2
c="$work/gpt2.toml"
steps=200
long=(--set training.steps=$steps --set checkpoint.every=0)

# only_complete_checkpoints RUN: every visible entry of RUN/checkpoints is a complete step_N directory (a write
# cut short stays hidden, as .step_N.partial).
only_complete_checkpoints() {
    for entry in "$1"/checkpoints/*; do
        [ -e "$entry" ] || continue
        case "$(basename "$entry")" in step_*) [ -f "$entry/manifest.json" ] || return 1 ;; *) return 1 ;; esac
    done
}

# The uninterrupted run every resumed one must match.
run "straight run" "$keel" train --config "$c" --out "$work/straight" "${long[@]}"

# SIGTERM to one process: it finishes the step, writes its checkpoint, says how to continue and exits 75 (EX_TEMPFAIL:
# not finished, to be resumed; 0 would tell a batch script or a Kubernetes Job that the run is done).
"$keel" train --config "$c" --out "$work/term" "${long[@]}" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/term" 5 && kill -TERM $job
wait $job
status=$?
stopped=$(sed -n 's/^stopped by SIGTERM after step \([0-9]*\)$/\1/p' "$work/out")
if [ $status -eq 75 ] && [ -n "$stopped" ] && [ "$stopped" -lt $steps ] \
    && [ -d "$work/term/checkpoints/$(printf 'step_%08d' "$stopped")" ] && grep -q "keel train --resume --out" "$work/out"; then
    pass "SIGTERM: the step finishes, step $stopped is checkpointed, exit 75"
else
    fail "SIGTERM: the step finishes, a checkpoint is written, exit 75 (exit $status, stopped at '${stopped}')"
fi
run "resume after SIGTERM" "$keel" train --resume --out "$work/term" \
    && same_logged_losses "resumed after SIGTERM logs the uninterrupted run's losses, as text" "$work/straight" "$work/term" $steps

# SIGUSR1 (Slurm's pre-emption warning) to one rank of four: all stop after the same step, with one checkpoint.
run "straight 4-process run" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/straight4" "${long[@]}" \
    --set distributed.zero_stage=1 --set training.batch_size=1
"${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/usr1" "${long[@]}" --set distributed.zero_stage=1 \
    --set training.batch_size=1 >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/usr1" 5 && kill -USR1 "$(rank_pid "$work/usr1" 2)"
wait $job
status=$?
stopped=$(sed -n 's/^stopped by SIGUSR1 after step \([0-9]*\)$/\1/p' "$work/out")
if [ $status -eq 75 ] && [ -n "$stopped" ] && [ "$stopped" -lt $steps ] && only_complete_checkpoints "$work/usr1" \
    && [ -d "$work/usr1/checkpoints/$(printf 'step_%08d' "$stopped")" ]; then
    pass "SIGUSR1 to rank 2 of 4: every rank stops after step $stopped, checkpointed, mpirun exits 75"
else
    fail "SIGUSR1 to rank 2 of 4: every rank stops after the same step, checkpointed, mpirun exits 75 (exit $status, '${stopped}')"
fi
run "resume after SIGUSR1" "${mpi[@]}" -np 4 "$keel" train --resume --out "$work/usr1" \
    && same_logged_losses "resumed after SIGUSR1 logs the uninterrupted run's losses, as text" "$work/straight4" "$work/usr1" $steps

# keel dpo likewise (as reward train and grpo, which share its loop): SIGUSR1 to rank 1 of 2 stops both after the same
# step with a checkpoint, exit 75 (without the handler the signal killed the rank, and the job lost every step since its
# last checkpoint); the same command with --resume then logs the uninterrupted run's losses.
"$keel" import hf "$here/../Reference/dpo_trl/model" --out "$work/dpo-base" >"$work/out" 2>"$work/err" || fail "import the DPO fixture"
dpo=(dpo --init-from "$work/dpo-base" --data "$here/../Reference/dpo_trl/pairs_text.jsonl" --set training.batch_size=1
     --set training.steps=60 --set training.seq_len=63 --set training.lr=1e-3 --set checkpoint.every=0)
run "straight dpo run" "${mpi[@]}" -np 2 "$keel" "${dpo[@]}" --out "$work/dpo-straight"
"${mpi[@]}" -np 2 "$keel" "${dpo[@]}" --out "$work/dpo-usr1" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/dpo-usr1" 3 && kill -USR1 "$(rank_pid "$work/dpo-usr1" 1)"
wait $job
status=$?
stopped=$(sed -n 's/^stopped by SIGUSR1 after step \([0-9]*\)$/\1/p' "$work/out")
if [ $status -eq 75 ] && [ -n "$stopped" ] && [ "$stopped" -lt 60 ] && [ -d "$work/dpo-usr1/checkpoints/$(printf 'step_%08d' "$stopped")" ] \
    && grep -q "SIGUSR1: stopped after step $stopped with checkpoint .*; continue with the same command and --resume" "$work/err"; then
    pass "SIGUSR1 to rank 1 of a 2-process dpo job: both stop after step $stopped, checkpointed, exit 75"
else
    fail "SIGUSR1 to rank 1 of a 2-process dpo job: both stop after the same step, checkpointed, exit 75 (exit $status, '${stopped}')"
fi
if run "resume dpo after SIGUSR1" "${mpi[@]}" -np 2 "$keel" "${dpo[@]}" --out "$work/dpo-usr1" --resume \
    && python3 "$here/compare_losses.py" "$work/dpo-straight/metrics.jsonl" "$work/dpo-usr1/metrics.jsonl" 60 0 >"$work/cmp" 2>&1; then
    pass "dpo resumed after SIGUSR1 logs the uninterrupted run's losses ($(cat "$work/cmp"))"
else
    fail "dpo resumed after SIGUSR1 logs the uninterrupted run's losses: $(cat "$work/cmp")"
fi
# Before the first step there is nothing to save: SIGUSR1 to rank 1 during the reference log-probabilities (a pass over
# every pair) stops both processes at the same batch — one stopping alone left the other waiting in its next collective
# until the timeout, and the job failed — with exit 75 and no checkpoint; --resume-if-any then starts the run, as a
# requeued job's one command does, and goes on from its checkpoint the next time.
python3 -c 'import sys; lines = open(sys.argv[1]).read().splitlines(); open(sys.argv[2], "w").write("\n".join(lines * 100) + "\n")' \
    "$here/../Reference/dpo_trl/pairs_text.jsonl" "$work/pairs-many.jsonl"
# stopped_early NAME OUT PATTERN SIGNAL TARGET COMMAND...: COMMAND (a dpo of pairs-many.jsonl into OUT) in the
# background, sent SIGNAL (to TARGET: "job" or a rank's number) a second into its reference pass; it must exit 75 with
# no checkpoint and PATTERN in its output or log.
stopped_early() {
    local name=$1 out=$2 pattern=$3 signal=$4 target=$5
    shift 5
    "$@" >"$work/out" 2>"$work/err" &
    local job=$!
    for _ in $(seq 1 600); do grep -q "^DPO from" "$work/err" && break; sleep 0.1; done
    sleep 1
    kill "-$signal" "$([ "$target" = job ] && echo $job || rank_pid "$out" "$target")"
    wait $job
    local status=$?
    if [ $status -eq 75 ] && [ ! -e "$out/checkpoints" ] && cat "$work/out" "$work/err" | grep -q "$pattern"; then
        pass "$name"
    else
        fail "$name (exit $status: $(tail -2 "$work/err"))"
    fi
}
stopped_early "SIGUSR1 to rank 1 of a 2-process dpo job before its first step: both stop there, exit 75, nothing saved" \
    "$work/dpo-early" "^stopped by SIGUSR1 during the reference log-probabilities ([0-9]* of 2400 pairs), before the first step: nothing was saved; run the command again$" \
    USR1 1 "${mpi[@]}" -np 2 "$keel" dpo --init-from "$work/dpo-base" --data "$work/pairs-many.jsonl" --set training.seq_len=63 \
    --set distributed.timeout_s=30 --out "$work/dpo-early"
# Under keel launch the supervisor says that nothing was saved (it said "with a checkpoint" for any stop).
stopped_early "SIGTERM to keel launch of dpo before its first step: exit 75, the supervisor says nothing was saved" \
    "$work/dpo-early-launch" "^launch: stopped by SIGTERM, before its first step: nothing was saved$" \
    TERM job "$keel" launch --nproc 2 -- dpo --init-from "$work/dpo-base" --data "$work/pairs-many.jsonl" --set training.seq_len=63 \
    --out "$work/dpo-early-launch"
early=(dpo --init-from "$work/dpo-base" --data "$here/../Reference/dpo_trl/pairs_text.jsonl" --set training.steps=2
       --set training.seq_len=63 --out "$work/dpo-early" --resume-if-any)
run "dpo --resume-if-any starts a run that saved nothing" "${mpi[@]}" -np 2 "$keel" "${early[@]}"
run "dpo --resume-if-any goes on from its checkpoint" "${mpi[@]}" -np 2 "$keel" "${early[@]}" --set training.steps=3
grep -q "resuming after step 2 from $work/dpo-early/checkpoints/step_00000002" "$work/err" \
    && pass "the second --resume-if-any resumed after step 2" || fail "the second --resume-if-any resumed after step 2"

# Under keel launch --max-restarts, a stop signal that reaches a rank and not the supervisor (Slurm's --signal=USR1@90
# goes to the job's tasks): the job stops with a checkpoint and is not restarted; the supervisor exits 75 too, so
# that the batch script can requeue (with 0 it would read as finished; restarted, it would run into the time limit).
"$keel" launch --nproc 2 --max-restarts 2 -- train --config "$c" --out "$work/usr1-supervised" "${long[@]}" \
    >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/usr1-supervised" 5 && kill -USR1 "$(rank_pid "$work/usr1-supervised" 1)"
wait $job
status=$?
if [ $status -eq 75 ] && grep -q "^launch: the job stopped on a stop signal to its ranks, with a checkpoint (exit status 75); not restarting" "$work/err" \
    && ! grep -q "restart 1" "$work/err" && grep -q "^stopped by SIGUSR1 after step" "$work/out"; then
    pass "SIGUSR1 to a rank of a supervised job: stopped with a checkpoint, not restarted, exit 75"
else
    fail "SIGUSR1 to a rank of a supervised job: stopped with a checkpoint, not restarted, exit 75 (exit $status)"
fi

# A 3 M-parameter model checkpointed every step, so a write is under way most of the time.
big=(--set model.n_layer=4 --set model.d_model=256 --set model.n_head=4 --set model.n_kv_head=4 --set training.steps=30
     --set checkpoint.every=1 --set checkpoint.keep=2)

# Two Ctrl-Cs: the second ends the process at once (130), and no partial checkpoint is ever visible. (The second
# comes 50 ms after the first: two of the same signal pending at once are delivered as one.)
"$keel" train --config "$c" --out "$work/int" "${big[@]}" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/int" 5 && kill -INT $job && sleep 0.05 && kill -INT $job
wait $job
status=$?
if [ $status -eq 130 ] && only_complete_checkpoints "$work/int"; then
    pass "a second Ctrl-C exits at once (130) and leaves only complete checkpoints"
else
    fail "a second Ctrl-C exits at once (130) and leaves only complete checkpoints (exit $status: $(ls -a "$work/int/checkpoints" | tr '\n' ' '))"
fi

# kill -9 in the middle of a checkpoint write (the 3 M-parameter model): the half-written checkpoint stays
# hidden, --resume takes the previous one, and the run ends with the uninterrupted run's losses. Up to three
# tries to land the kill inside a write.
run "straight run, checkpointed every step" "$keel" train --config "$c" --out "$work/big-straight" "${big[@]}"
landed=""
for try in 1 2 3; do
    rm -rf "$work/killed"
    "$keel" train --config "$c" --out "$work/killed" "${big[@]}" >"$work/out" 2>"$work/err" &
    job=$!
    after_steps "$work/killed" 5
    until compgen -G "$work/killed/checkpoints/.step_*.partial" >/dev/null || ! kill -0 $job 2>/dev/null; do :; done
    kill -9 $job 2>/dev/null
    wait $job 2>/dev/null
    partial=$(compgen -G "$work/killed/checkpoints/.step_*.partial")
    if [ -n "$partial" ] && [ ! -f "$partial/manifest.json" ]; then landed=$(basename "$partial"); break; fi
done
if [ -n "$landed" ] && run "resume after kill -9 in a write" "$keel" train --resume --out "$work/killed" \
    && grep -q "resumed from" "$work/err" && ! compgen -G "$work/killed/checkpoints/.step_*" >/dev/null; then
    same_logged_losses "kill -9 inside a checkpoint write ($landed): resumed from the previous one, the uninterrupted run's losses" \
        "$work/big-straight" "$work/killed" 30
else
    fail "kill -9 inside a checkpoint write: resumed from the previous checkpoint (landed in a write: '${landed}')"
fi

# keel launch --max-restarts: kill -9 of a random rank at a random step of a 4-process job (pp = 2 × dp = 2 with
# an in-memory snapshot every step and a checkpoint on disk every 30 (after the kill, so the newest state is a
# snapshot), and dp = 4 with ZeRO-1 and a checkpoint every
# 5); the supervisor restarts it — the first from the snapshot in memory, losing at most two steps; the second from
# disk — and it ends with the uninterrupted run's weights and optimizer state, bit for bit, and its losses.
for layout in "--set parallel.pp=2 --set parallel.micro_batches=2 --set checkpoint.every=30 --set checkpoint.snapshot_every=1" \
              "--set distributed.zero_stage=1 --set checkpoint.every=5"; do
    # shellcheck disable=SC2206 # the layout is words
    job_args=(train --config "$c" --set training.steps=60 --set training.batch_size=1 $layout)
    name="pp=2 × dp=2"; [[ "$layout" == *zero_stage* ]] && name="dp=4 ZeRO-1"
    source="from .*/checkpoints/step_"; [[ "$layout" == *snapshot* ]] && source="from the in-memory snapshot .*: [012] steps\? lost"
    tag=${name//[^a-z0-9]/}
    rank=$((RANDOM % 4)) at=$((8 + RANDOM % 15))
    run "$name uninterrupted" "$keel" launch --nproc 4 -- "${job_args[@]}" --out "$work/sup-straight-$tag" || continue
    "$keel" launch --nproc 4 --max-restarts 2 -- "${job_args[@]}" --out "$work/sup-$tag" >"$work/out" 2>"$work/err" &
    job=$!
    after_steps "$work/sup-$tag" $at && kill -9 "$(rank_pid "$work/sup-$tag" $rank)"
    wait $job
    status=$?
    final="checkpoints/step_00000060"
    if [ $status -eq 0 ] && grep -q "^launch: the job failed .* restart 1 of 2 $source" "$work/err" \
        && grep -q "^launch: recovered: step" "$work/err" && grep -q "^launch: finished after 1 restart" "$work/err" \
        && same_files "$work/sup-straight-$tag/$final" "$work/sup-$tag/$final" rank_0000{0,1,2,3}.safetensors; then
        pass "$name: kill -9 of rank $rank after step $at, restarted by keel launch, ends with the same weights bit for bit ($(grep -o 'restart 1 of 2 from.*' "$work/err" | sed "s|$work/||"); $(grep -o 'trained .* after the failure' "$work/err"))"
        same_logged_losses "$name: the restarted job logs the uninterrupted run's losses, as text" \
            "$work/sup-straight-$tag" "$work/sup-$tag" 60
    else
        fail "$name: kill -9 of rank $rank after step $at, restarted by keel launch, ends with the same weights (exit $status)"
    fi
done
# Two machines, stood for by this one: KEEL_MACHINE names each rank's machine (ranks 0-1 "a", 2-3 "b"), and each
# machine keeps its snapshots in a directory of its own. The pp = 2 × dp = 2 job above takes a snapshot every step,
# and every rank's file is copied to its buddy on the other machine. kill -9 of a rank of machine b, then b's
# memory is wiped (the machine is lost); the resumed job gathers the newest snapshot from machine a's copies —
# there is no checkpoint on disk yet — and ends with the uninterrupted run's weights, bit for bit.
shm="/dev/shm/keel-tests-$$"
two_machines() { "${mpi[@]}" -np 2 -x KEEL_MACHINE=a "$keel" "$@" : -np 2 -x KEEL_MACHINE=b "$keel" "$@"; }
at=$((5 + RANDOM % 15))
two_machines train --config "$c" --set training.steps=60 --set training.batch_size=1 --set parallel.pp=2 \
    --set parallel.micro_batches=2 --set checkpoint.every=30 --set checkpoint.snapshot_every=1 \
    --set checkpoint.snapshot_dir="$shm" --out "$work/machines" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/machines" $at && kill -9 "$(rank_pid "$work/machines" 3)"
wait $job
kept=$(ls "$(ls -d "$shm"/machines-*/a/step_* | tail -1)" 2>/dev/null | grep -c '^rank_')
rm -rf "$shm"/machines-*/b
if [ "$kept" -eq 4 ] && run "two machines: resume" two_machines train --resume --out "$work/machines" \
    && grep -q "resumed from the in-memory snapshot $shm/machines-[0-9a-f]*/a/step_[0-9]* ([0-9]* files, .* fetched from other machines)" "$work/err" \
    && ! grep -q "warning" "$work/err" && [ "$(grep -c '"checkpoint_copy_s"' "$work/machines/metrics.jsonl")" -gt 30 ] \
    && same_files "$work/sup-straight-pp2dp2/checkpoints/step_00000060" "$work/machines/checkpoints/step_00000060" rank_0000{0,1,2,3}.safetensors; then
    pass "two machines: kill -9 of rank 3 after step $at and machine b's memory wiped; resumed from machine a's copies with the same weights bit for bit ($(grep -o 'resumed from .*' "$work/err" | sed "s|$shm/||"))"
else
    fail "two machines: resumed from machine a's copies with the same weights (machine a kept $kept rank files)"
fi
[ -z "$(ls -A "$shm" 2>/dev/null)" ] || fail "two machines: the snapshots are removed when the run ends ($(ls -R "$shm"))"
rm -rf "$shm"

# keel launch on a machine that runs no rank of the job (a login node, stood for by KEEL_MACHINE=login; its mpirun
# starts every rank as machine "a"): the job's newest state is an in-memory snapshot on machine a, which the
# supervisor does not see, and there is no checkpoint on disk yet. It restarts the job with --resume-if-any, and
# the job resumes from that snapshot, losing at most two steps, where it used to start over (deleting the snapshots).
printf '#!/bin/sh\nKEEL_MACHINE=a exec mpirun "$@"\n' >"$work/mpirun-a"
chmod +x "$work/mpirun-a"
at=$((5 + RANDOM % 15))
KEEL_MACHINE=login "$keel" launch --nproc 4 --mpirun "$work/mpirun-a" --max-restarts 1 -- train --config "$c" \
    --set training.steps=60 --set training.batch_size=1 --set parallel.pp=2 --set parallel.micro_batches=2 \
    --set checkpoint.every=30 --set checkpoint.snapshot_every=1 --set checkpoint.snapshot_dir="$shm" \
    --out "$work/login" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/login" $at && kill -9 "$(rank_pid "$work/login" 1)"
wait $job
status=$?
resumed=$(sed -n "s|^resumed from the in-memory snapshot $shm/login-[0-9a-f]*/a/step_[0-9]* at step \([0-9]*\)$|\1|p" "$work/err")
recovered=$(sed -n 's|^launch: recovered: step \([0-9]*\) trained .*|\1|p' "$work/err")
if [ $status -eq 0 ] && grep -q "^launch: the job failed .* with no checkpoint on disk or on this machine; restart 1 of 1 from an in-memory snapshot on the job's machines if one survived" "$work/err" \
    && [ -n "$resumed" ] && [ "$resumed" -ge $((at - 2)) ] && [ -n "$recovered" ] && [ "$recovered" -gt "$resumed" ] \
    && same_files "$work/sup-straight-pp2dp2/checkpoints/step_00000060" "$work/login/checkpoints/step_00000060" rank_0000{0,1,2,3}.safetensors; then
    pass "keel launch from a machine without ranks: kill -9 of rank 1 after step $at; the job resumed from its machine's snapshot of step $resumed (recovered: step $recovered) with the same weights bit for bit"
else
    fail "keel launch from a machine without ranks: the job resumed from its machine's snapshot (exit $status; resumed at step '${resumed}', recovered at step '${recovered}', killed after step $at)"
fi
rm -rf "$shm"

# srun reports a signal that killed any task in preference to the exit status a rank aborted with (the ranks still
# running when one aborts are killed), so status 3 may reach the supervisor as 137: the rank's .no-restart file still
# stops it. A launcher that turns 3 into 137 stands in for srun here.
printf '#!/bin/sh\nmpirun "$@"\ns=$?\n[ $s -eq 3 ] && exit 137\nexit $s\n' >"$work/mpirun-masking"
chmod +x "$work/mpirun-masking"
"$keel" launch --nproc 2 --mpirun "$work/mpirun-masking" --max-restarts 2 -- train --config "$c" --out "$work/diverged-masked" \
    --set training.steps=5 --set training.lr=1e30 --set training.weight_decay=0.0 --set training.min_lr=1e30 --set training.grad_clip=0.0 >"$work/out" 2>"$work/err"
status=$?
if [ $status -eq 3 ] && grep -q "^Error: rank 0: training diverged" "$work/err" \
    && grep -q "^launch: the job failed (exit status 137) with an error that a restart would not mend" "$work/err" \
    && ! grep -q "restart 1 of 2" "$work/err" && [ ! -e "$work/diverged-masked/.no-restart" ]; then
    pass "a diverged job whose launcher reports 137 is not restarted either (the rank's .no-restart file says why)"
else
    fail "a diverged job whose launcher reports 137 is not restarted either (exit $status)"
fi
# And a job stopped by a signal to its ranks whose launcher reports 137 (srun's --kill-on-bad-exit may kill the ranks
# still finishing when the first exits 75): the stop the rank recorded keeps it from being restarted.
printf '#!/bin/sh\nmpirun "$@"\ns=$?\n[ $s -eq 75 ] && exit 137\nexit $s\n' >"$work/mpirun-masking-stop"
chmod +x "$work/mpirun-masking-stop"
"$keel" launch --nproc 2 --mpirun "$work/mpirun-masking-stop" --max-restarts 2 -- train --config "$c" \
    --out "$work/stopped-masked" "${long[@]}" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/stopped-masked" 5 && kill -USR1 "$(rank_pid "$work/stopped-masked" 1)"
wait $job
status=$?
if [ $status -eq 75 ] && grep -q "^launch: the job stopped on a stop signal to its ranks, with a checkpoint (exit status 137); not restarting" "$work/err" \
    && ! grep -q "restart 1 of 2" "$work/err" && [ ! -e "$work/stopped-masked/.no-restart" ]; then
    pass "a job stopped by a signal to a rank, whose launcher reports 137, is not restarted (the stop it recorded says so) and exits 75"
else
    fail "a job stopped by a signal to a rank, whose launcher reports 137, is not restarted and exits 75 (exit $status)"
fi
# The same launcher, with the stop sent to the supervisor (SIGTERM, as a batch system sends it): it passes SIGUSR1 on
# (the wrapper forwards it to mpirun), the ranks checkpoint and exit 75, and the supervisor exits 75 though its
# launcher reported 137 (it exited 137 before).
printf '#!/bin/sh\nmpirun "$@" &\npid=$!\ntrap '"'"'kill -USR1 $pid'"'"' USR1\nwhile :; do wait $pid; s=$?; kill -0 $pid 2>/dev/null || break; done\n[ $s -eq 75 ] && exit 137\nexit $s\n' \
    >"$work/mpirun-masking-forward"
chmod +x "$work/mpirun-masking-forward"
"$keel" launch --nproc 2 --mpirun "$work/mpirun-masking-forward" --max-restarts 2 -- train --config "$c" \
    --out "$work/stopped-supervisor" "${long[@]}" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/stopped-supervisor" 5 && kill -TERM $job
wait $job
status=$?
if [ $status -eq 75 ] && grep -q "^launch: stopped by SIGTERM, with a checkpoint; not restarting" "$work/err" \
    && ls -d "$work"/stopped-supervisor/checkpoints/step_* >/dev/null 2>&1 && [ ! -e "$work/stopped-supervisor/.no-restart" ]; then
    pass "a supervisor stopped by SIGTERM, whose launcher reports 137, exits 75 after its ranks checkpointed"
else
    fail "a supervisor stopped by SIGTERM, whose launcher reports 137, exits 75 after its ranks checkpointed (exit $status)"
fi
# Ctrl-C in a terminal reaches the whole foreground process group. mpirun answers it by killing the ranks a second
# after its SIGTERM (it exited 1, and a rank whose step took longer left no checkpoint); keel launch of a training job,
# without --max-restarts too, takes it itself, passes it on as SIGUSR1, and exits 75 after the ranks checkpointed.
setsid "$keel" launch --nproc 2 -- train --config "$c" --out "$work/ctrl-c" "${long[@]}" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/ctrl-c" 5 && kill -INT -- -$job
wait $job
status=$?
if [ $status -eq 75 ] && grep -q "^launch: stopped by SIGINT, with a checkpoint$" "$work/err" \
    && ls -d "$work"/ctrl-c/checkpoints/step_* >/dev/null 2>&1; then
    pass "Ctrl-C to the process group of keel launch stops the job with a checkpoint and exits 75"
else
    fail "Ctrl-C to the process group of keel launch stops the job with a checkpoint and exits 75 (exit $status)"
fi
# The same for a fine-tuning job (dpo; reward train and grpo share its loop), which keel launch supervises too.
setsid "$keel" launch --nproc 2 -- "${dpo[@]}" --out "$work/dpo-ctrl-c" >"$work/out" 2>"$work/err" &
job=$!
after_steps "$work/dpo-ctrl-c" 3 && kill -INT -- -$job
wait $job
status=$?
if [ $status -eq 75 ] && grep -q "^launch: stopped by SIGINT, with a checkpoint$" "$work/err" \
    && ls -d "$work"/dpo-ctrl-c/checkpoints/step_* >/dev/null 2>&1; then
    pass "Ctrl-C to the process group of keel launch of dpo stops the job with a checkpoint and exits 75"
else
    fail "Ctrl-C to the process group of keel launch of dpo stops the job with a checkpoint and exits 75 (exit $status)"
fi
# A supervisor killed with -9 takes its job with it (the launcher is bound to it): no rank is left training unsupervised.
"$keel" launch --nproc 2 --max-restarts 1 -- train --config "$c" --out "$work/orphan" --set training.steps=100000 \
    --set checkpoint.every=0 >"$work/out" 2>"$work/err" &
supervisor=$!
after_steps "$work/orphan" 2
kill -9 $supervisor
wait $supervisor 2>/dev/null
gone=no
for _ in $(seq 1 60); do
    if [ -z "$(rank_pid "$work/orphan" 0)$(rank_pid "$work/orphan" 1)" ] && ! pgrep -f -- "mpirun .*--out $work/orphan( |\$)" >/dev/null; then
        gone=yes
        break
    fi
    sleep 0.5
done
if [ $gone = yes ]; then
    pass "a supervisor killed with -9 takes its mpirun and ranks with it"
else
    fail "a supervisor killed with -9 takes its mpirun and ranks with it"
    pkill -9 -f -- "--out $work/orphan( |\$)"
fi
# A failure that recurs without a new step in between (here a launcher that fails at once) is retried --max-restarts
# times in a row, each after a longer wait (2 s before the second); one that trained further resets the count.
printf '#!/bin/sh\nexit 1\n' >"$work/mpirun-failing"
chmod +x "$work/mpirun-failing"
"$keel" launch --nproc 2 --mpirun "$work/mpirun-failing" --max-restarts 2 -- train --config "$c" --out "$work/recurring" \
    >"$work/out" 2>"$work/err"
status=$?
if [ $status -eq 1 ] && [ "$(grep -c '^launch: the job failed (exit status 1) after step 0' "$work/err")" -eq 2 ] \
    && grep -q "restart 2 of 2" "$work/err" && grep -q "^launch: waiting 2 s first: 2 failures in a row without a new step" "$work/err" \
    && grep -q "^launch: the job failed (exit status 1); giving up after 2 restarts in a row that trained no further" "$work/err"; then
    pass "a failure that recurs without progress is retried --max-restarts times in a row, waiting longer each time"
else
    fail "a failure that recurs without progress is retried --max-restarts times in a row, waiting longer each time (exit $status)"
fi
refused "--max-restarts without a training run" "--max-restarts supervises a training run" \
    "$keel" launch --nproc 2 --max-restarts 1 -- collectives

# A job that diverged would diverge again from any checkpoint (resuming is bit for bit): it exits with status 3, and
# keel launch says so and does not restart it.
"$keel" launch --nproc 2 --max-restarts 2 -- train --config "$c" --out "$work/diverged" --set training.steps=5 \
    --set training.lr=1e30 --set training.weight_decay=0.0 --set training.min_lr=1e30 --set training.grad_clip=0.0 >"$work/out" 2>"$work/err"
status=$?
if [ $status -eq 3 ] && grep -q "^Error: rank 0: training diverged" "$work/err" \
    && grep -q "^launch: the job failed (exit status 3) with an error that a restart would not mend" "$work/err" && ! grep -q "restart 1 of 2" "$work/err"; then
    pass "a diverged job exits with status 3 and is not restarted"
else
    fail "a diverged job exits with status 3 and is not restarted (exit $status)"
fi
# A job whose --out already holds a run refuses to start, and is not restarted: a restart with --resume would take the
# old run over (its weights, trained on under this job's settings).
before=$(cat "$work/sup-straight-pp2dp2/config.toml")
"$keel" launch --nproc 2 --max-restarts 2 -- train --config "$c" --out "$work/sup-straight-pp2dp2" --set training.steps=5 >"$work/out" 2>"$work/err"
status=$?
if [ $status -eq 3 ] && grep -q "^Error: rank 0: $work/sup-straight-pp2dp2 already holds a run" "$work/err" \
    && [ "$before" = "$(cat "$work/sup-straight-pp2dp2/config.toml")" ] \
    && grep -q "^launch: the job failed (exit status 3) with an error that a restart would not mend" "$work/err" && ! grep -q "restart 1 of 2" "$work/err"; then
    pass "a job whose --out holds another run exits with status 3 and does not take it over"
else
    fail "a job whose --out holds another run exits with status 3 and does not take it over (exit $status)"
fi

# A full disk, as a file-size limit of 64 KiB: the first checkpoint (about 130 KB of weights) cannot be written.
(ulimit -f 64 && exec "$keel" train --config "$c" --out "$work/full" --set training.steps=4 --set checkpoint.every=2) \
    >"$work/out" 2>"$work/err"
status=$?
if [ $status -ne 0 ] && [ "$(grep -c '^Error: ' "$work/err")" -eq 1 ] \
    && grep -q "^Error: checkpoint .*step_00000002 was not written (the previous ones are intact): .*File too large" "$work/err" \
    && only_complete_checkpoints "$work/full" && [ -z "$(ls -A "$work/full/checkpoints")" ]; then
    pass "a write past the file-size limit: one clear error, no partial checkpoint"
else
    fail "a write past the file-size limit: one clear error, no partial checkpoint (exit $status)"
fi

echo "interruption tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
