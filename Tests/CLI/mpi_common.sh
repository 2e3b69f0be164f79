# Helpers shared by the multi-process test scripts (sourced, after they set $keel and $here): a scratch
# directory $work, removed on exit, holding a small corpus; pass/fail counting; the mpirun command.
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

config() { # config FILE ARCH [LAYERS]: a tiny model (2 blocks unless LAYERS), 50 steps of batch 2 on the corpus.
    cat >"$1" <<TOML
[model]
arch = "$2"
n_layer = ${3:-2}
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

# What the layout tests (tensor_tests.sh, sharding_tests.sh, resharding_tests.sh) add to `config`: 30 steps; four
# heads, so tp = 2 and 4 divide them, and the byte tokenizer's 257 ids, which they do not (the ranks' rows of the
# token table and the head differ by one); two micro-batches of one 16-token sequence per replica.
steps=30
layouts=(--set training.steps=$steps --set parallel.micro_batches=2 --set training.seq_len=16 --set training.batch_size=1
         --set model.n_head=4)

# run NAME [mpirun -np N] keel train ... : runs a training command, recording stderr.
run() {
    local name=$1
    shift
    "$@" >"$work/out" 2>"$work/err"
    local status=$?
    [ $status -eq 0 ] && return 0
    fail "$name (exit $status)"
    return 1
}

# same_losses NAME REFERENCE RUN [STEPS]: per-step losses agree to 1e-5 relative for all STEPS (default 50) steps.
same_losses() {
    if python3 "$here/compare_losses.py" "$2/metrics.jsonl" "$3/metrics.jsonl" "${4:-50}" 1e-5 >"$work/cmp" 2>&1; then
        pass "$1 ($(cat "$work/cmp"))"
    else
        fail "$1: $(cat "$work/cmp")"
    fi
}

# same_logged_losses NAME STRAIGHT RESUMED STEPS: the runs log the same per-step losses and the same last
# validation loss, as text (what a resumed run must reproduce bit for bit).
same_logged_losses() {
    if python3 - "$2/metrics.jsonl" "$3/metrics.jsonl" "$4" >"$work/cmp" 2>&1 <<'PY'
import re, sys
def losses(path):  # the logged text of every step's loss, and of the last validation loss
    lines = [l for l in open(path) if 'loss"' in l]
    steps = [(re.search(r'"step": ?(\d+)', l).group(1), re.search(r'"loss": ?([^,}]+)', l).group(1))
             for l in lines if '"loss"' in l]
    return steps, re.search(r'"val_loss": ?([^,}]+)', lines[-1]).group(1)
(straight, last), (resumed, resumed_last) = losses(sys.argv[1]), losses(sys.argv[2])
assert len(straight) == int(sys.argv[3]), len(straight)
assert straight == resumed, [(a, b) for a, b in zip(straight, resumed) if a != b][:3]
assert last == resumed_last, (last, resumed_last)
PY
    then pass "$1"; else fail "$1: $(cat "$work/cmp")"; fi
}

# resumes NAME PROCESSES REFERENCE ONE_PROCESS TRAIN_ARGS...: a run of TRAIN_ARGS on PROCESSES ranks stopped at
# step 15 and resumed logs the straight run's losses as text, and its step-15 checkpoint (whole tensors) resumes on
# one process, with the settings ONE_PROCESS (words), like REFERENCE, the single-process run.
resumed_runs=0
resumes() {
    local name=$1 processes=$2 reference=$3 one=$4
    shift 4
    resumed_runs=$((resumed_runs + 1))
    local out="$work/resumed-$resumed_runs"
    run "$name straight" "${mpi[@]}" -np "$processes" "$keel" train --out "$out-straight" "$@" \
        && run "$name first half" "${mpi[@]}" -np "$processes" "$keel" train --out "$out" "$@" --stop-after 15 \
        && cp -r "$out" "$out-relaid" \
        && run "$name second half" "${mpi[@]}" -np "$processes" "$keel" train --resume --out "$out" \
        && same_logged_losses "$name run resumed from step 15 logs the straight run's losses, as text" \
            "$out-straight" "$out" $steps
    # shellcheck disable=SC2086 # ONE_PROCESS is words
    run "$name checkpoint resumed on one process" "$keel" train --resume --out "$out-relaid" $one \
        && same_losses "$name checkpoint resumed on one process = one process" "$reference" "$out-relaid" $steps
}

# export_matches NAME REFERENCE_RUN RUN: both runs' checkpoints export to Hugging Face with the same tensors.
export_matches() {
    if "$keel" export hf --checkpoint "$2" --out "$2-hf" >"$work/out" 2>"$work/err" \
        && "$keel" export hf --checkpoint "$3" --out "$3-hf" >"$work/out" 2>"$work/err" \
        && python3 - "$here/../Reference" "$2-hf" "$3-hf" >"$work/err" 2>&1 <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from safetensors_np import load_file
reference, run = (load_file(f"{d}/model.safetensors") for d in sys.argv[2:4])
assert sorted(reference) == sorted(run), (sorted(reference), sorted(run))
worst = max(float(np.max(np.abs(reference[k] - run[k]))) for k in reference)
print(f"{len(reference)} tensors, largest difference {worst:.1e}")
assert worst < 1e-5, worst
PY
    then pass "$1 ($(cat "$work/err"))"; else fail "$1"; fi
}

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

# rank_pid RUN_DIR RANK [VARIABLE]: the PID of that rank of the job writing RUN_DIR (its rank read from VARIABLE,
# OMPI_COMM_WORLD_RANK unless given: SLURM_PROCID under srun).
rank_pid() {
    for pid in $(pgrep -f -- "--out $1( |\$)"); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "${3:-OMPI_COMM_WORLD_RANK}=$2"; then echo "$pid"; return; fi
    done
}

# fault NAME SIGNAL TIMEOUT LIMIT PATTERN CONFIG [TRAIN OPTIONS...]: a two-process run of CONFIG; stop or kill
# rank 1 mid-run; the job must end non-zero within LIMIT seconds of the signal with PATTERN in its output.
faults=0
fault() {
    local name=$1 signal=$2 timeout=$3 limit=$4 pattern=$5 config=$6
    shift 6
    faults=$((faults + 1))
    local out="$work/fault-$faults"
    "${mpi[@]}" -np 2 "$keel" train --config "$config" --out "$out" --set training.steps=1000000 \
        --set distributed.timeout_s="$timeout" "$@" >"$work/out" 2>"$work/err" &
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
        pkill -9 -f -- "--out $out( |\$)"
        return
    fi
    wait $job
    local status=$?
    if [ $status -ne 0 ] && grep -Eq "$pattern" "$work/err"; then
        pass "$name (exit $status after $((SECONDS - start)) s)"
    else
        fail "$name (exit $status, wanted /$pattern/)"
    fi
    pkill -9 -f -- "--out $out( |\$)" 2>/dev/null
}

# after_steps RUN N: waits (up to 60 s) until RUN's metrics.jsonl has N step records.
after_steps() {
    local waited=0
    until [ "$(cat "$1/metrics.jsonl" 2>/dev/null | grep -c '"loss"')" -ge "$2" ]; do
        sleep 0.2
        waited=$((waited + 1))
        [ $waited -gt 300 ] && return 1
    done
    return 0
}

# same_files DIR_A DIR_B FILE...: every FILE is in both directories, with the same bytes.
same_files() {
    local a=$1 b=$2 file
    shift 2
    for file in "$@"; do
        [ -f "$a/$file" ] && cmp -s "$a/$file" "$b/$file" || return 1
    done
}
