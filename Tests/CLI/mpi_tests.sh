#!/usr/bin/env bash
# Multi-process tests under OpenMPI's mpirun on this machine: collectives, pipeline execution against the whole
# model, data-parallel equivalence with a single process (with and without ZeRO-1, both architectures), overlap,
# resharded resume, launcher environments, and a rank that hangs or dies.
# Usage: Tests/CLI/mpi_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: mpi_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$work/err" ] && sed 's/^/    /' "$work/err" | tail -8; }

mpi=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
# One kernel thread per rank: the ranks share this machine's cores.
export KEEL_THREADS=1

# A small deterministic corpus of varied lines.
mkdir -p "$work/corpus"
awk 'BEGIN { split("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were", w, " ");
             for (d = 1; d <= 3; d++) { f = sprintf("'"$work"'/corpus/doc%d.txt", d);
               for (i = 1; i <= 400; i++) { s = ""; for (j = 1; j <= 12; j++) s = s w[(i * 7 + j * j * 3 + d * 11) % 30 + 1] " "; print s "." > f } } }'

config() { # config FILE ARCH
    cat >"$1" <<TOML
[model]
arch = "$2"
n_layer = 2
n_head = 2
n_kv_head = $([ "$2" = llama ] && echo 1 || echo 2)
d_model = 32
max_seq_len = 32
[data]
paths = ["$work/corpus"]
val_fraction = 0.1
[training]
steps = 50
batch_size = 2
seq_len = 32
lr = 1e-3
warmup_steps = 5
eval_every = 0
eval_batches = 2
[distributed]
bucket_mb = 0.01
[logging]
every = 10
TOML
}

# run NAME OUT [mpirun -np N] keel train ... : runs a training command, recording stderr.
run() {
    local name=$1
    shift
    if "$@" >"$work/out" 2>"$work/err"; then return 0; fi
    fail "$name (exit $?)"
    return 1
}

# same_losses NAME REFERENCE RUN: per-step losses agree to 1e-5 relative for all 50 steps.
same_losses() {
    if python3 "$here/compare_losses.py" "$2/metrics.jsonl" "$3/metrics.jsonl" 50 1e-5 >"$work/cmp" 2>&1; then
        pass "$1 ($(cat "$work/cmp"))"
    else
        fail "$1: $(cat "$work/cmp")"
    fi
}

# --- Collectives ------------------------------------------------------------------------------------------
for n in 2 4; do
    if "${mpi[@]}" -np $n "$keel" collectives --sizes "" >"$work/out" 2>"$work/err" && grep -q "15 checks passed" "$work/out"; then
        pass "collectives check on $n processes"
    else
        fail "collectives check on $n processes"
    fi
done

# --- Pipeline execution: every schedule's loss and gradients equal the whole model's ------------------------
for n in 2 4; do
    if "${mpi[@]}" -np $n "$keel" pipeline-check >"$work/out" 2>"$work/err" && grep -q "16 checks passed" "$work/out"; then
        pass "pipeline check on $n ranks (GPipe, 1F1B, interleaved, ZB-H1; GPT-2 and Llama; m = p and 2p)"
    else
        fail "pipeline check on $n ranks"
    fi
done

# The schedule benchmark on a tiny model: one row per schedule and m, the formula's bubble, and the activations
# rank 0 held (GPipe all m, 1F1B at most p = 2, interleaved per chunk).
if "${mpi[@]}" -np 2 "$keel" pipeline-bench --layers 4 --width 32 --heads 2 --seq-len 16 --micro-batches 2,4 --steps 1 \
    >"$work/out" 2>"$work/err" && python3 - "$work/out" >"$work/err" 2>&1 <<'PY'
import re, sys
rows = {(f[0], int(f[1])): f for f in (l.split() for l in open(sys.argv[1]).read().splitlines()[2:])}
assert sorted(rows) == sorted((s, m) for s in ("gpipe", "1f1b", "interleaved", "zb-h1") for m in (2, 4)), rows.keys()
assert rows[("gpipe", 2)][5] == "33.3%" and rows[("1f1b", 4)][5] == "20.0%" and rows[("interleaved", 4)][5] == "11.1%"
assert rows[("gpipe", 4)][6] == "4" and rows[("1f1b", 4)][6] == "2" and rows[("interleaved", 4)][6] == "4,2"
assert all(0 <= float(r[3].rstrip("%")) < 100 and float(r[2]) > 0 for r in rows.values())
PY
then pass "pipeline-bench reports every schedule with its formula bubble and activation slots"
else fail "pipeline-bench reports every schedule with its formula bubble and activation slots"; fi

# --- Data parallel equals one process with the whole batch ------------------------------------------------
for arch in gpt2 llama; do
    config "$work/$arch.toml" "$arch"
    c="$work/$arch.toml"
    run "$arch reference, batch 4" "$keel" train --config "$c" --out "$work/$arch-ref4" --set training.batch_size=4 || continue
    run "$arch reference, batch 8" "$keel" train --config "$c" --out "$work/$arch-ref8" --set training.batch_size=8 || continue
    for zero in 0 1; do
        run "$arch DP=2 zero $zero" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/$arch-dp2-z$zero" \
            --set distributed.zero_stage=$zero \
            && same_losses "$arch: DP=2 × batch 2 (ZeRO stage $zero) = one process × batch 4" "$work/$arch-ref4" "$work/$arch-dp2-z$zero"
        run "$arch DP=4 zero $zero" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/$arch-dp4-z$zero" \
            --set distributed.zero_stage=$zero \
            && same_losses "$arch: DP=4 × batch 2 (ZeRO stage $zero) = one process × batch 8" "$work/$arch-ref8" "$work/$arch-dp4-z$zero"
    done
done

c="$work/gpt2.toml"
# N-way gradient accumulation on one process equals N ranks; the accumulating DP run communicates only on
# the last micro-batch: every operation a step starts is counted (comm_ops), and a step with two micro-batches
# starts exactly as many as a step with one.
run "accumulation reference" "$keel" train --config "$c" --out "$work/accum" --set training.grad_accum=2 \
    && same_losses "gpt2: DP=2 × batch 2 = one process × batch 2 × 2 accumulation steps" "$work/accum" "$work/gpt2-dp2-z0"
run "DP with accumulation" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/dp-accum" \
    --set training.grad_accum=2 --set training.batch_size=1
if python3 - "$work/gpt2-dp2-z0/metrics.jsonl" "$work/dp-accum/metrics.jsonl" >"$work/err" 2>&1 <<'PY'
import json, sys
def per_step(path, key): return [json.loads(l)[key] for l in open(path) if '"comm_ops"' in l]
plain, accumulating = per_step(sys.argv[1], "comm_ops"), per_step(sys.argv[2], "comm_ops")
buckets = per_step(sys.argv[1], "comm_buckets")
assert len(plain) == len(accumulating) == 50, (len(plain), len(accumulating))
# Every bucket once, plus the loss average: nothing else, and nothing more with accumulation.
assert set(plain) == {buckets[0] + 1} and buckets[0] > 1, (set(plain), buckets[0])
assert accumulating == plain, f"accumulating run started {sorted(set(accumulating))} operations per step, plain {plain[0]}"
PY
then pass "no communication on accumulation micro-steps but the last"; else fail "no communication on accumulation micro-steps but the last"; fi

# Overlap: on every step, some buckets start before the backward pass ends.
if python3 - "$work/gpt2-dp2-z0/metrics.jsonl" "$work/llama-dp4-z1/metrics.jsonl" >"$work/err" 2>&1 <<'PY'
import json, sys
for path in sys.argv[1:]:
    records = [json.loads(l) for l in open(path) if '"comm_buckets"' in l]
    assert len(records) == 50, len(records)
    late = [r["step"] for r in records if r["comm_overlapped_buckets"] == 0]
    assert not late, f"{path}: no bucket started during the backward pass of steps {late}"
PY
then pass "bucket all-reduces start during the backward pass of every step"; else fail "bucket all-reduces start during the backward pass of every step"; fi

# ZeRO-1 shards the optimizer state, measured: the peak resident memory of ranks 1-3 (rank 0 gathers the whole
# state to write the checkpoint) drops by the 3/4 of AdamW's two moments they no longer hold, less the 1/4-size
# buffer of reduced gradients they gain: 8·P·3/4 − 4·P/4 = 5·P bytes for P parameters.
for zero in 0 1; do
    run "ZeRO memory, stage $zero" "${mpi[@]}" -np 4 sh -c \
        '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$work/rss-z$zero" \
        "$keel" train --config "$c" --out "$work/zero-mem-$zero" --set distributed.zero_stage=$zero \
        --set model.n_layer=12 --set model.d_model=256 --set model.n_head=4 --set model.n_kv_head=4 \
        --set training.steps=2 --set training.batch_size=1
done
if python3 - "$work" "$work/zero-mem-0/metrics.jsonl" >"$work/err" 2>&1 <<'PY'
import re, sys
work = sys.argv[1]
parameters = 257 * 256 + 32 * 256 + 12 * (12 * 256 * 256 + 13 * 256) + 2 * 256   # GPT-2, byte vocabulary
saved = [(int(open(f"{work}/rss-z0.{r}").read()) - int(open(f"{work}/rss-z1.{r}").read())) * 1024 for r in (1, 2, 3)]
expected = 5 * parameters
print("peak RSS saved per rank: " + ", ".join(f"{s / 2**20:.1f} MiB" for s in saved) + f" (expected {expected / 2**20:.1f} MiB)")
assert all(abs(s / expected - 1) < 0.2 for s in saved), (saved, expected)
PY
then
    pass "ZeRO-1 lowers each rank's measured peak memory by its unsharded optimizer state ($(cat "$work/err"))"
else
    fail "ZeRO-1 lowers each rank's measured peak memory by its unsharded optimizer state"
fi

# A run checkpointed on 4 ZeRO ranks resumes on 2 (same global batch) and matches the single process.
run "resharded run, first half" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/reshard" \
    --set distributed.zero_stage=1 --stop-after 25 \
    && run "resharded run, second half" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/reshard" --resume \
        --set distributed.zero_stage=1 --set training.batch_size=4 \
    && same_losses "checkpoint of 4 ZeRO ranks resumed on 2 = one process" "$work/gpt2-ref8" "$work/reshard"

# keel launch runs the same job through mpirun.
if "$keel" launch --nproc 2 -- train --config "$c" --out "$work/launched" >"$work/out" 2>"$work/err" \
    && grep -q "^launch: mpirun -np 2" "$work/err"; then
    same_losses "keel launch --nproc 2 = one process × batch 4" "$work/gpt2-ref4" "$work/launched"
else
    fail "keel launch --nproc 2"
fi

# --- Launcher environments and failures --------------------------------------------------------------------
# refused NAME FRAGMENT COMMAND...: non-zero exit with exactly one "Error: …" line containing FRAGMENT.
refused() {
    local name=$1 fragment=$2
    shift 2
    if "$@" >"$work/out" 2>"$work/err"; then fail "$name (exit 0)"; return; fi
    if [ "$(grep -c '^Error: ' "$work/err")" -eq 1 ] && grep -q -- "^Error: .*$fragment" "$work/err"; then
        pass "$name"
    else
        fail "$name (wanted one error line with '$fragment')"
    fi
}
refused "launch without a command" "give the command after --" "$keel" launch --nproc 2
refused "launch with no processes" "--nproc must be at least 1" "$keel" launch --nproc 0 -- train --config "$c"
refused "collectives outside a launcher" "run this under a launcher" "$keel" collectives
refused "pipeline-check outside a launcher" "run this under a launcher, e.g. .keel launch --nproc 2 -- pipeline-check" "$keel" pipeline-check
more=$(($(nproc) + 1))
if "$keel" launch --nproc $more --dry-run -- train --config "$c" >"$work/out" 2>"$work/err" \
    && grep -Eq "^launch: mpirun -np $more .*--oversubscribe.* $keel train --config $c\$" "$work/err"; then
    pass "launch --dry-run prints the mpirun command (oversubscribing more processes than cores)"
else
    fail "launch --dry-run prints the mpirun command"
fi

# torchrun-style variables without an MPI launcher: a clear error instead of N independent runs.
if RANK=0 WORLD_SIZE=2 "$keel" train --config "$c" --out "$work/torchrun" >"$work/out" 2>"$work/err"; then
    fail "torchrun variables without MPI are refused"
elif grep -q "^Error: torchrun variables say this job has 2 processes but MPI sees 1" "$work/err"; then
    pass "torchrun variables without MPI are refused"
else
    fail "torchrun variables without MPI are refused"
fi

# rank_pid RUN_DIR RANK: the PID of that rank of the job writing RUN_DIR.
rank_pid() {
    for pid in $(pgrep -f "keel train --config $c --out $1"); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$pid"; return; fi
    done
}

# fault NAME SIGNAL TIMEOUT LIMIT PATTERN: stop or kill rank 1 mid-run; the job must end non-zero within LIMIT
# seconds of the signal with PATTERN in its output.
fault() {
    local name=$1 signal=$2 timeout=$3 limit=$4 pattern=$5 out="$work/fault-$2"
    "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$out" --set training.steps=1000000 \
        --set distributed.timeout_s="$timeout" >"$work/out" 2>"$work/err" &
    local job=$! pid="" waited=0
    while [ -z "$pid" ] || [ ! -s "$out/metrics.jsonl" ]; do
        sleep 0.5
        pid=$(rank_pid "$out" 1)
        waited=$((waited + 1))
        [ $waited -gt 120 ] && break
    done
    sleep 1
    kill "-$signal" "$pid" 2>/dev/null
    local start=$SECONDS
    while kill -0 $job 2>/dev/null && [ $((SECONDS - start)) -le "$limit" ]; do sleep 0.5; done
    if kill -0 $job 2>/dev/null; then
        fail "$name: still running $limit s after the fault"
        kill -9 $job 2>/dev/null
        pkill -9 -f "keel train --config $c --out $out"
        return
    fi
    wait $job
    local status=$?
    if [ $status -ne 0 ] && grep -Eq "$pattern" "$work/err"; then
        pass "$name (exit $status after $((SECONDS - start)) s)"
    else
        fail "$name (exit $status, wanted /$pattern/)"
    fi
    pkill -9 -f "keel train --config $c --out $out" 2>/dev/null
}
# Rank 1 may stop before an operation (the others see it never started) or in the middle of one (it no
# longer answers pings); either way rank 0 must name it.
fault "a hung rank stops the job, named" STOP 5 30 "^Error: rank 0: '.*' did not finish within 5 s: rank 1 (never reported starting it|has not communicated|started it but does not respond)"
fault "a killed rank stops the job, named" KILL 60 60 "process rank 1 .*signal 9"

echo "mpi tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
