#!/usr/bin/env bash
# Pipeline-parallel training under OpenMPI's mpirun: every layout and schedule equals one process, resume is
# bit-exact, the checkpoint exports the single-process weights, the bubble is logged, the trace is written,
# and a dead, hung or differently configured rank stops the job with its name.
# Usage: Tests/CLI/pipeline_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: pipeline_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

steps=30
# failed_with NAME PATTERN COMMAND...: non-zero exit and an "Error: …" line matching PATTERN (every rank of a job
# may print its own).
failed_with() {
    local name=$1 pattern=$2
    shift 2
    if "$@" >"$work/out" 2>"$work/err"; then fail "$name (exit 0)"; return; fi
    if grep -Eq -- "^Error: .*$pattern" "$work/err"; then pass "$name"; else fail "$name (wanted /$pattern/)"; fi
}

# --- Every layout and schedule equals one process on the same global batch ---------------------------------
# Eight blocks, so that four ranks with two chunks each still hold one block per stage; four micro-batches of
# one 16-token sequence per replica (the debug build is slow). GPT-2 runs every layout, schedule and ZeRO stage;
# the schedules do not depend on the architecture, so Llama (its own stage contents: RoPE, RMSNorm, SwiGLU,
# grouped key/value heads) runs every schedule on pp = 2 × dp = 2 with ZeRO-1 and the interleaved one on pp = 4, to keep the suite short.
for arch in gpt2 llama; do
    config "$work/$arch.toml" "$arch" 8
    c="$work/$arch.toml"
    common=(--set training.steps=$steps --set parallel.micro_batches=4 --set training.seq_len=16)
    run "$arch reference, batch 1" "$keel" train --config "$c" --out "$work/$arch-ref1" "${common[@]}" \
        --set training.batch_size=1 || continue
    run "$arch reference, batch 2" "$keel" train --config "$c" --out "$work/$arch-ref2" "${common[@]}" || continue
    for layout in "2 1" "4 1" "2 2"; do
        read -r pp dp <<<"$layout"
        for schedule in gpipe 1f1b interleaved zb-h1; do
            zeros=(0)
            [ "$dp" -eq 2 ] && zeros=(0 1)
            for zero in "${zeros[@]}"; do
                [ "$arch" = llama ] && [ "$layout $zero" != "2 2 1" ] && [ "$layout $schedule" != "4 1 interleaved" ] && continue
                name="$arch pp=$pp dp=$dp $schedule$([ "$zero" -eq 1 ] && echo " ZeRO-1")"
                out="$work/$arch-$pp-$dp-$schedule-$zero"
                run "$name" "${mpi[@]}" -np $((pp * dp)) "$keel" train --config "$c" --out "$out" "${common[@]}" \
                    --set training.batch_size=1 --set parallel.pp=$pp --set "parallel.schedule=\"$schedule\"" \
                    --set distributed.zero_stage=$zero \
                    && same_losses "$name = one process × batch $dp" "$work/$arch-ref$dp" "$out" $steps
            done
        done
    done
done

# --- Supervised fine-tuning: packed examples on every stage, the loss's targets counted over the whole step ---------
# Prompt-completion pairs of very different lengths packed into 33-token windows (several examples per window,
# prompts not trained on): pp = 2 × dp = 2 with one sequence per replica equals one process with two, which needs each
# stage to keep documents apart and the replicas to average over the targets the loss counts in the whole step.
config "$work/sft-base.toml" llama 4
if run "sft base run" "$keel" train --config "$work/sft-base.toml" --out "$work/sft-base" --set training.steps=1; then
    # Short sums and long spelled-out answers: windows count very different numbers of targets.
    python3 -c '
import json, random
random.seed(4)
for i in range(300):
    a, b = random.randint(0, 999), random.randint(0, 99)
    answer = str(a + b) if i % 2 else " ".join(str(a + b)) + " is the sum of " + str(a)
    print(json.dumps({"prompt": f"{a}+{b}=", "completion": answer}))' >"$work/pairs.jsonl"
    sft=(--data "$work/pairs.jsonl" --set training.steps=10 --set parallel.micro_batches=2 --set training.lr=3e-3)
    run "sft reference, batch 2" "$keel" sft --init-from "$work/sft-base" --out "$work/sft-ref" "${sft[@]}" \
        --set training.batch_size=2 \
        && run "sft pp=2 dp=2" "${mpi[@]}" -np 4 "$keel" sft --init-from "$work/sft-base" --out "$work/sft-2-2" "${sft[@]}" \
            --set training.batch_size=1 --set parallel.pp=2 \
        && same_losses "sft pp=2 dp=2 = one process × batch 2" "$work/sft-ref" "$work/sft-2-2" 10
fi

# --- The measured bubble is logged for every stage -----------------------------------------------------------
if python3 - "$work/gpt2-4-1-1f1b-0/metrics.jsonl" >"$work/err" 2>&1 <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(records) == 30, len(records)
for r in records:
    stages = r["bubble_per_stage"]
    assert len(stages) == 4 and all(0 <= b < 1 for b in stages), r
    assert abs(r["bubble"] - sum(stages) / 4) < 1e-9, r
PY
then pass "metrics log the bubble of each of 4 stages and their mean"; else fail "metrics log the bubble of each of 4 stages and their mean"; fi

# --- Resume in the same layout is bit-exact ------------------------------------------------------------------
c="$work/gpt2.toml"
resume_args=(--set training.steps=$steps --set parallel.micro_batches=4 --set training.seq_len=16
             --set training.batch_size=1 --set parallel.pp=2
             --set 'parallel.schedule="interleaved"' --set distributed.zero_stage=1 --set checkpoint.every=100)
run "resumed run, first half" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/resumed" "${resume_args[@]}" \
    --stop-after 15 \
    && cp -r "$work/resumed" "$work/relaid" \
    && run "resumed run, second half" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/resumed" \
        "${resume_args[@]}" --resume \
    && same_logged_losses "pp=2 × dp=2 interleaved ZeRO-1 run resumed from its step-15 checkpoint logs the straight run's losses, as text" \
        "$work/gpt2-2-2-interleaved-1" "$work/resumed" $steps

# The checkpoint holds the whole model, so the same step-15 checkpoint also resumes on one process (batch 2 =
# the pipeline's 2 replicas × 1) and ends like the single-process run.
run "pipeline checkpoint resumed on one process" "$keel" train --resume --out "$work/relaid" --set parallel.pp=1 \
    --set 'parallel.schedule="1f1b"' --set distributed.zero_stage=0 --set training.batch_size=2 \
    && same_losses "pp=2 × dp=2 checkpoint resumed on one process = one process" "$work/gpt2-ref2" "$work/relaid" $steps

# --- A pipeline checkpoint exports the weights one process has after the same steps ---------------------------
for arch in gpt2 llama; do
    run "$arch export of the pipeline run" "$keel" export hf --checkpoint "$work/$arch-4-1-interleaved-0" --out "$work/$arch-hf-pp" \
        && run "$arch export of the reference" "$keel" export hf --checkpoint "$work/$arch-ref1" --out "$work/$arch-hf-ref" \
        && if python3 - "$here/../Reference" "$work/$arch-hf-ref" "$work/$arch-hf-pp" >"$work/err" 2>&1 <<'PY'
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from safetensors_np import load_file
reference, pipeline = (load_file(f"{d}/model.safetensors") for d in sys.argv[2:4])
assert sorted(reference) == sorted(pipeline), (sorted(reference), sorted(pipeline))
assert json.load(open(f"{sys.argv[2]}/config.json")) == json.load(open(f"{sys.argv[3]}/config.json"))
worst = max(float(np.max(np.abs(reference[k] - pipeline[k]))) for k in reference)
assert all(reference[k].shape == pipeline[k].shape for k in reference)
print(f"{len(reference)} tensors, largest difference {worst:.1e}")
assert worst < 1e-5, worst
PY
        then pass "$arch: pp=4 ZB-H1 checkpoint exports the single-process weights ($(cat "$work/err"))"
        else fail "$arch: pp=4 ZB-H1 checkpoint exports the single-process weights"; fi
done

# --- The trace: every rank's passes, waits and sends on one clock ---------------------------------------------
if "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/traced" --set training.steps=3 --set parallel.pp=2 \
        --set training.seq_len=16 --set training.batch_size=1 \
        --set parallel.micro_batches=4 --set 'parallel.schedule="gpipe"' --trace "$work/trace.json" >"$work/out" 2>"$work/err" \
    && python3 - "$work/trace.json" >"$work/err" 2>&1 <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
names = sorted(e["args"]["name"] for e in events if e["ph"] == "M")
assert names == ["rank 0: stage 0, replica 0", "rank 1: stage 1, replica 0"], names
def slices(pid, prefix):
    return [e for e in events if e["pid"] == pid and e["name"].startswith(prefix)]
for pid in (0, 1):
    passes = [e["name"] for e in events if e["pid"] == pid and e["ph"] == "X" and e["cat"] in ("forward", "backward")]
    assert passes == ["F0", "F1", "F2", "F3", "B3", "B2", "B1", "B0"] * 3, (pid, passes)
sends = slices(0, "send activations")
assert len(sends) == 12 and all(e["ph"] == "i" for e in sends), len(sends)
assert len(slices(1, "send gradient")) == 12 and len(slices(1, "wait: activations")) == 12
# Rank 1 forwards micro-batch k of each step only after rank 0 sent it (1 ms of slack for the clocks' start).
forwards = [e for e in slices(1, "F") if e["ph"] == "X"]
for send, forward in zip(sends, forwards):
    assert forward["ts"] >= send["ts"] - 1000, (send, forward)
PY
then pass "--trace writes both ranks' passes, waits and sends, in schedule order on one clock"
else fail "--trace writes both ranks' passes, waits and sends, in schedule order on one clock"; fi
# --trace-steps bounds what every rank keeps: the first step of the run only, and the log says which.
if "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/traced-one" --set training.steps=3 --set parallel.pp=2 \
        --set training.seq_len=16 --set training.batch_size=1 --set parallel.micro_batches=4 \
        --trace "$work/trace-one.json" --trace-steps 1 >"$work/out" 2>"$work/err" \
    && grep -q "^trace: $work/trace-one.json, steps 1–1 " "$work/err" \
    && python3 -c 'import json, sys; e = json.load(open(sys.argv[1]))["traceEvents"]; s = {x["args"]["step"] for x in e if x["ph"] == "X"}; sys.exit(0 if s == {1} else 1)' "$work/trace-one.json"; then
    pass "--trace-steps 1 records the run's first step only"
else
    fail "--trace-steps 1 records the run's first step only"
fi

# --- Bad layouts and failures --------------------------------------------------------------------------------
refused "a pipeline outside a launcher" "parallel.pp × parallel.tp × parallel.dp needs 2 processes; start them with .mpirun -n 2" "$keel" train --config "$c" --out "$work/alone" \
    --set parallel.pp=2
failed_with "pp that does not divide the processes" "parallel.pp \(2\) must divide the number of processes \(3\)" \
    "${mpi[@]}" -np 3 "$keel" train --config "$c" --out "$work/three" --set parallel.pp=2
# Two ranks started with different schedules: their settings are compared before any training step (and the plans
# they make of them, which a different Keel on one machine could make otherwise: PipelineScheduleTests).
failed_with "ranks started with different schedules" \
    "the job's processes were given different settings: rank 1 differs from rank 0" \
    "${mpi[@]}" -np 1 "$keel" train --config "$c" --out "$work/mismatch" --set parallel.pp=2 --set 'parallel.schedule="1f1b"' \
    : -np 1 "$keel" train --config "$c" --out "$work/mismatch" --set parallel.pp=2 --set 'parallel.schedule="gpipe"'
[ -e "$work/mismatch/metrics.jsonl" ] && fail "the mismatched job logged a training step"
# The same schedule but micro-batches of another size: their messages would not match, and a larger receive takes
# a shorter message without complaint.
failed_with "ranks started with different batch sizes" \
    "the job's processes were given different settings: rank 1 differs from rank 0" \
    "${mpi[@]}" -np 1 "$keel" train --config "$c" --out "$work/mismatch-batch" --set parallel.pp=2 --set training.batch_size=2 \
    : -np 1 "$keel" train --config "$c" --out "$work/mismatch-batch" --set parallel.pp=2 --set training.batch_size=4
[ -e "$work/mismatch-batch/metrics.jsonl" ] && fail "the job of mismatched batch sizes logged a training step"
# A resume that cuts the stages otherwise than its checkpoint (here the default cut after stage_boundaries = [3]) reads
# it all the same, and says how the cut moved and how to keep the checkpoint's.
if "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/recut" --set parallel.pp=2 --set 'parallel.stage_boundaries=[3]' \
        --set training.steps=4 --stop-after 2 >"$work/out" 2>"$work/err" \
    && "${mpi[@]}" -np 2 "$keel" train --resume --config "$c" --out "$work/recut" --set parallel.pp=2 --set training.steps=4 >"$work/out" 2>"$work/err" \
    && grep -q '^note: step_00000002.s stages end at blocks \[3, 8\], this run.s at \[4, 8\] (cut by parallel.stage_balance = "compute"; parallel.stage_boundaries = \[3\] keeps the checkpoint.s)' "$work/err" \
    && grep -q '^stage_balance = "compute"$' "$work/recut/config.toml"; then
    pass "a resume on another stage cut reads the checkpoint, says how the cut moved, and the run's settings record its balance"
else
    fail "a resume on another stage cut reads the checkpoint, says how the cut moved, and the run's settings record its balance"; tail -3 "$work/err"
fi

fault "a hung pipeline stage stops the job, named with the action waited on" STOP 5 30 \
    "^Error: rank 0: 'step [0-9]+: [^']*' did not finish within 5 s: rank 1 " "$c" --set parallel.pp=2
fault "a killed pipeline stage stops the job, named" KILL 60 60 "process rank 1 .*signal 9" "$c" --set parallel.pp=2

echo "pipeline tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
