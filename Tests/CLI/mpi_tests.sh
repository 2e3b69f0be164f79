#!/usr/bin/env bash
# Multi-process tests under OpenMPI's mpirun on this machine: collectives, data-parallel equivalence with
# a single process (with and without ZeRO-1, both architectures), overlap, resharded resume, launcher
# environments, and a rank that hangs or dies.
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
    if "${mpi[@]}" -np $n "$keel" collectives --sizes "" >"$work/out" 2>"$work/err" && grep -q "13 checks passed" "$work/out"; then
        pass "collectives check on $n processes"
    else
        fail "collectives check on $n processes"
    fi
done

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
# the last micro-batch (as many buckets per step as without accumulation).
run "accumulation reference" "$keel" train --config "$c" --out "$work/accum" --set training.grad_accum=2 \
    && same_losses "gpt2: DP=2 × batch 2 = one process × batch 2 × 2 accumulation steps" "$work/accum" "$work/gpt2-dp2-z0"
run "DP with accumulation" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/dp-accum" \
    --set training.grad_accum=2 --set training.batch_size=1
if python3 - "$work/gpt2-dp2-z0/metrics.jsonl" "$work/dp-accum/metrics.jsonl" <<'PY'
import json, sys
def buckets(path): return {json.loads(l)["comm_buckets"] for l in open(path) if '"comm_buckets"' in l}
plain, accumulating = buckets(sys.argv[1]), buckets(sys.argv[2])
assert plain == accumulating and len(plain) == 1 and min(plain) > 1, (plain, accumulating)
PY
then pass "no communication on accumulation micro-steps but the last"; else fail "no communication on accumulation micro-steps but the last"; fi

# Overlap: some buckets start before the backward pass ends.
if python3 - "$work/gpt2-dp2-z0/metrics.jsonl" "$work/llama-dp4-z1/metrics.jsonl" <<'PY'
import json, sys
for path in sys.argv[1:]:
    records = [json.loads(l) for l in open(path) if '"comm_buckets"' in l]
    assert len(records) == 50, len(records)
    early = sum(r["comm_overlapped_buckets"] for r in records)
    assert early > 0, f"{path}: no bucket started during the backward pass"
PY
then pass "bucket all-reduces start during the backward pass"; else fail "bucket all-reduces start during the backward pass"; fi

# ZeRO-1 shards the optimizer state: rank 0 reports a quarter of the unsharded size on 4 ranks.
run "ZeRO memory" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/zero-mem" --set distributed.zero_stage=1 \
    --set training.steps=1
if python3 - "$work/err" <<'PY'
import re, sys
per_rank, whole = map(float, re.search(r"ZeRO-1, optimizer state ([0-9.]+) KiB per rank \(([0-9.]+) KiB unsharded\)", open(sys.argv[1]).read()).groups())
assert abs(per_rank * 4 / whole - 1) < 0.01, (per_rank, whole)
PY
then
    pass "ZeRO-1 optimizer state is 1/N per rank"
else
    fail "ZeRO-1 optimizer state is 1/N per rank"
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
