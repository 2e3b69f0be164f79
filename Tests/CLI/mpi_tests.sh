#!/usr/bin/env bash
# Multi-process tests under OpenMPI's mpirun on this machine: collectives, pipeline execution against the whole
# model, data-parallel equivalence with a single process (with and without ZeRO-1, both architectures), overlap,
# launcher environments, and a rank that hangs or dies.
# Usage: Tests/CLI/mpi_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: mpi_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

# --- Collectives ------------------------------------------------------------------------------------------
for n in 2 4; do
    if "${mpi[@]}" -np $n "$keel" collectives --sizes "" >"$work/out" 2>"$work/err" && grep -q "17 checks passed" "$work/out"; then
        pass "collectives check on $n processes"
    else
        fail "collectives check on $n processes"
    fi
done

# A rank that keeps communicating is waited for past the timeout (a slow pipeline stage, a rank a step behind):
# rank 1 sends a message every 2/3 s while rank 0 waits 4.7 s for a receive, then all wait for it in an all-reduce;
# and a rank that works alone (rank 0 writing a checkpoint that all wait for) for 5 s, communicating nothing.
# Only a rank that finishes nothing for a whole timeout, and says it is not working alone, is a hang (the fault tests below).
if "${mpi[@]}" -np 3 "$keel" collectives --sizes "" --timeout 2 --check-patience >"$work/out" 2>"$work/err" \
    && grep -Eq "^patience: waited ([4-9]|[1-9][0-9])\.[0-9] s for a receive and ([4-9]|[1-9][0-9])\.[0-9] s in an all-reduce on a rank that kept communicating, ([4-9]|[1-9][0-9])\.[0-9] s on one that worked alone \(timeout 2 s\)$" "$work/out"; then
    pass "a rank that keeps communicating, or works alone, is waited for past the timeout ($(grep -o 'waited.*alone' "$work/out"))"
else
    fail "a rank that keeps communicating, or works alone, is waited for past the timeout"; cat "$work/out" "$work/err"
fi

# The same checks with every collective cut into pieces of at most 7 elements, as MPI's 2³¹ − 1 element limit cuts
# a huge model chunk's (KEEL_MPI_MESSAGE_LIMIT lowers the limit to reach the cutting with small buffers).
for n in 2 4; do
    if "${mpi[@]}" -x KEEL_MPI_MESSAGE_LIMIT=7 -np $n "$keel" collectives --sizes "" >"$work/out" 2>"$work/err" \
        && grep -q "17 checks passed" "$work/out" \
        && [ "$(grep -c "^note: MPI collectives go in pieces of at most 7 elements" "$work/err")" -eq $n ]; then
        pass "collectives check on $n processes, in pieces of 7 elements"
    else
        fail "collectives check on $n processes, in pieces of 7 elements"
    fi
done
# A limit that is not a count from 1 is named in a warning, and the collectives go whole.
if "${mpi[@]}" -x KEEL_MPI_MESSAGE_LIMIT=0 -np 2 "$keel" collectives --sizes "" >"$work/out" 2>"$work/err" \
    && grep -q "17 checks passed" "$work/out" \
    && [ "$(grep -c "^warning: KEEL_MPI_MESSAGE_LIMIT=0 is not a count from 1 to 2147483647; using 2147483647" "$work/err")" -eq 2 ] \
    && ! grep -q "go in pieces" "$work/err"; then
    pass "a KEEL_MPI_MESSAGE_LIMIT of 0 is warned about and ignored"
else
    fail "a KEEL_MPI_MESSAGE_LIMIT of 0 is warned about and ignored: $(cat "$work/err")"
fi

# A size that is not a number is refused, naming it.
if ! "${mpi[@]}" -np 2 "$keel" collectives --sizes big >"$work/out" 2>"$work/err" \
    && grep -q -- "--sizes: 'big' is not a positive number of MB" "$work/err"; then
    pass "collectives refuses --sizes big"
else
    fail "collectives refuses --sizes big"
fi

# --- Pipeline execution: every schedule's loss and gradients equal the whole model's ------------------------
for n in 2 4; do
    if "${mpi[@]}" -np $n "$keel" pipeline-check >"$work/out" 2>"$work/err" && grep -q "16 checks passed" "$work/out"; then
        pass "pipeline check on $n ranks (GPipe, 1F1B, interleaved, ZB-H1; GPT-2 and Llama; m = p and 2p)"
    else
        fail "pipeline check on $n ranks"
    fi
done

# The schedule benchmark on a tiny model: one row per schedule and m, the formula's bubble, and the activations
# each rank held, per chunk, beside the simulator's count (GPipe all m; 1F1B p − rank; ZB-H1 p on every rank, since a
# micro-batch's slot is held until its W; interleaved per chunk).
if "${mpi[@]}" -np 2 "$keel" pipeline-bench --layers 4 --width 32 --heads 2 --seq-len 16 --micro-batches 2,4 --steps 1 \
    >"$work/out" 2>"$work/err" && python3 - "$work/out" >"$work/err" 2>&1 <<'PY'
import re, sys
measured, projected = open(sys.argv[1]).read().split("\n\n")
rows = {(f[0], int(f[1])): f for f in (l.split() for l in measured.splitlines()[2:])}
assert sorted(rows) == sorted((s, m) for s in ("gpipe", "1f1b", "interleaved", "zb-h1") for m in (2, 4)), rows.keys()
assert rows[("gpipe", 2)][5] == "33.3%" and rows[("1f1b", 4)][5] == "20.0%" and rows[("interleaved", 4)][5] == "11.1%"
assert rows[("gpipe", 4)][6] == "4|4" and rows[("1f1b", 4)][6] == "2|1" and rows[("interleaved", 4)][6] == "4,2|3,1"
assert rows[("zb-h1", 4)][6] == "2|2" and rows[("zb-h1", 2)][6] == "2|2", rows[("zb-h1", 4)]
assert all(r[6] == r[7] for (s, m), r in rows.items() if s != "interleaved"), rows
assert all(0 <= float(r[3].rstrip("%")) < 100 and float(r[2]) > 0 for r in rows.values())
# Then each schedule simulated at p = 4, 8, 16 with m = p, 2p, 4p; with equal stages, GPipe's and 1F1B's bubble
# is the formula's whatever the measured forward and backward costs.
larger = {(f[0], int(f[1]), int(f[2])): f[3:] for f in (l.split() for l in projected.splitlines()[2:])}
assert sorted(larger) == sorted((s, p, k * p) for s in ("gpipe", "1f1b", "interleaved", "zb-h1") for p in (4, 8, 16) for k in (1, 2, 4)), sorted(larger)
assert larger[("1f1b", 4, 4)][1] == "42.9%" and larger[("interleaved", 16, 64)][1] == "10.5%" and larger[("zb-h1", 8, 32)][1] == "6.8%"
assert all(larger[(s, p, m)][0] == larger[(s, p, m)][1] for (s, p, m) in larger if s in ("gpipe", "1f1b")), larger
assert all(0 < float(v[0].rstrip("%")) < 100 for v in larger.values())
PY
then pass "pipeline-bench reports every schedule with its formula bubble and activation slots, and simulates p = 4, 8, 16"
else fail "pipeline-bench reports every schedule with its formula bubble and activation slots, and simulates p = 4, 8, 16"; fi

# --- Data parallel equals one process with the whole batch ------------------------------------------------
# GPT-2 on 2 and 4 ranks with and without ZeRO-1; data parallelism does not depend on the architecture, so Llama
# runs the largest of them (4 ranks, ZeRO-1), to keep the suite short.
for arch in gpt2 llama; do
    config "$work/$arch.toml" "$arch"
    c="$work/$arch.toml"
    if [ "$arch" = llama ]; then
        run "llama reference, batch 8" "$keel" train --config "$c" --out "$work/llama-ref8" --set training.batch_size=8 \
            && run "llama DP=4 zero 1" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/llama-dp4-z1" \
                --set distributed.zero_stage=1 \
            && same_losses "llama: DP=4 × batch 2 (ZeRO stage 1) = one process × batch 8" "$work/llama-ref8" "$work/llama-dp4-z1"
        continue
    fi
    run "$arch reference, batch 4" "$keel" train --config "$c" --out "$work/$arch-ref4" --set training.batch_size=4 || continue
    run "$arch reference, batch 8" "$keel" train --config "$c" --out "$work/$arch-ref8" --set training.batch_size=8 || continue
    # And with every collective cut into pieces of at most 1000 elements (the model's start-up broadcast, its
    # gradients' all-reduce and ZeRO-1's all-gather of the parameters among them).
    run "$arch DP=2 zero 1, in pieces" "${mpi[@]}" -x KEEL_MPI_MESSAGE_LIMIT=1000 -np 2 "$keel" train --config "$c" \
        --out "$work/$arch-dp2-z1-pieces" --set distributed.zero_stage=1 \
        && [ "$(grep -c "^note: MPI collectives go in pieces of at most 1000 elements" "$work/err")" -eq 2 ] \
        && same_losses "$arch: DP=2 (ZeRO stage 1) with collectives in pieces of 1000 elements = one process × batch 4" \
            "$work/$arch-ref4" "$work/$arch-dp2-z1-pieces"
    for zero in 0 1; do
        run "$arch DP=2 zero $zero" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/$arch-dp2-z$zero" \
            --set distributed.zero_stage=$zero \
            && same_losses "$arch: DP=2 × batch 2 (ZeRO stage $zero) = one process × batch 4" "$work/$arch-ref4" "$work/$arch-dp2-z$zero"
        run "$arch DP=4 zero $zero" "${mpi[@]}" -np 4 "$keel" train --config "$c" --out "$work/$arch-dp4-z$zero" \
            --set distributed.zero_stage=$zero \
            && same_losses "$arch: DP=4 × batch 2 (ZeRO stage $zero) = one process × batch 8" "$work/$arch-ref8" "$work/$arch-dp4-z$zero"
    done
    if python3 "$here/compare_losses.py" "$work/$arch-dp2-z1/metrics.jsonl" "$work/$arch-dp2-z1-pieces/metrics.jsonl" 50 0 \
        >"$work/err" 2>&1; then
        pass "$arch: DP=2 (ZeRO stage 1) with collectives in pieces = whole collectives, bit for bit"
    else
        fail "$arch: DP=2 (ZeRO stage 1) with collectives in pieces = whole collectives, bit for bit"
    fi
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

# (Checkpoints resumed in other layouts: Tests/CLI/resharding_tests.sh.)

# --resume: the ranks check the newest checkpoint together, each its share of the files; a file damaged in rank 1's
# share is named by rank 1, and every rank goes back to the checkpoint before.
run "damaged" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/damaged" --set training.steps=20 --set checkpoint.every=10
printf '\377' | dd of="$work/damaged/checkpoints/step_00000020/rank_00001.safetensors" bs=1 seek=200 conv=notrunc 2>/dev/null
run "resume past a damaged checkpoint" "${mpi[@]}" -np 2 "$keel" train --resume --out "$work/damaged"
if grep -q "^rank 1: warning: skipping checkpoint $work/damaged/checkpoints/step_00000020 is damaged: rank_00001.safetensors fails its checksum" "$work/err" \
    && grep -q "resumed from $work/damaged/checkpoints/step_00000010 at step 10" "$work/err"; then
    pass "--resume on 2 ranks: rank 1 names the file of its share that fails its checksum, and the job resumes from the checkpoint before"
else
    fail "--resume on 2 ranks: rank 1 names the file of its share that fails its checksum, and the job resumes from the checkpoint before"
fi
# Ranks that see different checkpoints (a run directory not shared by every machine) stop before reading any.
cp -r "$work/damaged" "$work/unshared"
rm -r "$work/unshared/checkpoints/step_00000020"
if ! "${mpi[@]}" -np 1 "$keel" train --resume --out "$work/damaged" : -np 1 "$keel" train --resume --out "$work/unshared" \
        >"$work/out" 2>"$work/err" \
    && grep -q "^Error: .*--resume: the ranks see different checkpoints in .*(1 to 2 of them): the run directory must be one that every machine shares" "$work/err"; then
    pass "--resume on ranks that see different checkpoints is one error"
else
    fail "--resume on ranks that see different checkpoints is one error"; tail -3 "$work/err"
fi
# Ranks given different settings (here another learning rate on rank 1's command line) stop before training: their
# replicas would drift apart with no error.
if ! "${mpi[@]}" -np 1 "$keel" train --config "$c" --out "$work/unequal" : -np 1 "$keel" train --config "$c" --out "$work/unequal" \
        --set training.lr=0.003 >"$work/out" 2>"$work/err" \
    && grep -q "^Error: rank [01]: the job's processes were given different settings: rank 1 differs from rank 0" "$work/err" \
    && [ ! -e "$work/unequal/metrics.jsonl" ]; then
    pass "ranks given different settings are one error before training"
else
    fail "ranks given different settings are one error before training"; grep "^Error" "$work/err"
fi
# A setting given its default on one machine's command line and left out on the other's is the same setting.
if "${mpi[@]}" -np 1 "$keel" train --config "$c" --out "$work/spelled-out" --set training.steps=2 \
        : -np 1 "$keel" train --config "$c" --out "$work/spelled-out" --set training.steps=2 --set training.beta1=0.9 \
        --set distributed.zero_stage=0 --set checkpoint.async=true >"$work/out" 2>"$work/err"; then
    pass "ranks of which one spells out default settings train together"
else
    fail "ranks of which one spells out default settings train together"; grep "^Error" "$work/err"
fi
# Paths a machine may hold its own copy under (here the corpus, copied) are not compared.
cp -r "$work/corpus" "$work/corpus-copy"
if "${mpi[@]}" -np 1 "$keel" train --config "$c" --out "$work/local-copies" --set training.steps=2 \
        : -np 1 "$keel" train --config "$c" --out "$work/local-copies" --set training.steps=2 --set "data.paths=[\"$work/corpus-copy\"]" \
        >"$work/out" 2>"$work/err"; then
    pass "ranks reading their own copies of the data under other paths train together"
else
    fail "ranks reading their own copies of the data under other paths train together"
fi

# A prepared dataset: the ranks verify its shards together, each hashing a share (each reading all of them would read
# the dataset once per rank at every start). Two ranks on it log the losses of one process with twice the batch; a
# shard damaged in rank 1's share is named by rank 1, and the job does not start.
"$keel" data prepare --tokenizer byte --input "$work/corpus" --out "$work/ds" --val-fraction 0.34 --shard-tokens 4000 >/dev/null 2>&1
on_dataset=(--set 'data.paths=[]' --set "data.dataset=\"$work/ds\"" --set training.steps=10)
run "dataset reference" "$keel" train --config "$c" --out "$work/ds-ref4" "${on_dataset[@]}" --set training.batch_size=4 \
    && run "dataset DP=2" "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/ds-dp2" "${on_dataset[@]}" \
    && same_losses "a prepared dataset: DP=2 × batch 2 = one process × batch 4" "$work/ds-ref4" "$work/ds-dp2" 10
printf '\377' | dd of="$work/ds/train_000001.bin" bs=1 seek=2000 conv=notrunc 2>/dev/null
if ! "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/ds-damaged" "${on_dataset[@]}" >"$work/out" 2>"$work/err" \
    && grep -q "^Error: rank 1: data: $work/ds/train_000001.bin: checksum mismatch (the shard is damaged)" "$work/err" \
    && ! grep -q "^Error: rank 0: .*checksum mismatch" "$work/err" \
    && [ ! -d "$work/ds-damaged/checkpoints/step_00000001" ]; then
    pass "a prepared dataset on 2 ranks: rank 1 names the damaged shard of its share (rank 0 did not read it), and the job does not start"
else
    fail "a prepared dataset on 2 ranks: rank 1 names the damaged shard of its share (rank 0 did not read it), and the job does not start"
fi

# keel launch runs the same job through mpirun.
if "$keel" launch --nproc 2 -- train --config "$c" --out "$work/launched" >"$work/out" 2>"$work/err" \
    && grep -q "^launch: mpirun -np 2" "$work/err"; then
    same_losses "keel launch --nproc 2 = one process × batch 4" "$work/gpt2-ref4" "$work/launched"
else
    fail "keel launch --nproc 2"
fi

# --- Launcher environments and failures --------------------------------------------------------------------
refused "launch without a command" "give the command after --" "$keel" launch --nproc 2
refused "launch with no processes" "--nproc must be at least 1" "$keel" launch --nproc 0 -- train --config "$c"
# The command is parsed once by the launcher: a misspelt option is one error before any process starts.
refused "launch of a command with a misspelt option" "the command after --: Unknown option '--confg'" \
    "$keel" launch --nproc 2 -- train --confg "$c"
refused "launch inside launch" "not another launch" "$keel" launch --nproc 2 -- launch --nproc 2 -- train --config "$c"
refused "collectives outside a launcher" "run this under a launcher" "$keel" collectives
refused "pipeline-check outside a launcher" "run this under a launcher, e.g. .keel launch --nproc 2 -- pipeline-check" "$keel" pipeline-check
more=$(($(nproc) + 1))
if "$keel" launch --nproc $more --dry-run -- train --config "$c" >"$work/out" 2>"$work/err" \
    && grep -Eq "^launch: mpirun -np $more .*--oversubscribe.* $keel train --config $c\$" "$work/err"; then
    pass "launch --dry-run prints the mpirun command (oversubscribing more processes than cores)"
else
    fail "launch --dry-run prints the mpirun command"
fi
# One process on this machine gets all its cores, not OpenMPI's default of one (its checkpoint writer and
# communication thread would share that core with the compute threads).
if "$keel" launch --nproc 1 --dry-run -- train --config "$c" >"$work/out" 2>"$work/err" \
    && grep -Eq "^launch: mpirun -np 1 .*--map-by slot:PE=$(nproc) .*$keel train --config $c\$" "$work/err"; then
    pass "launch binds one process to all $(nproc) cores"
else
    fail "launch binds one process to all $(nproc) cores: $(cat "$work/err")"
fi
# With --hosts, the other machines' cores are unknown here: the ranks run unbound (OpenMPI's default would bind each
# to one core, or to a socket whose cores every local rank would fill with threads) and divide their own machine.
if "$keel" launch --nproc 2 --hosts localhost:2 --dry-run -- train --config "$c" >"$work/out" 2>"$work/err" \
    && grep -Eq "^launch: mpirun -np 2 .*--host localhost:2 --bind-to none .*$keel train --config $c\$" "$work/err" \
    && ! grep -q "map-by" "$work/err"; then
    pass "launch --hosts leaves the ranks unbound"
else
    fail "launch --hosts leaves the ranks unbound: $(cat "$work/err")"
fi

# The environment forwarded to the ranks (-x): KEEL_*, OPENBLAS_* and OMP_*, but not what keel set when it chose
# OpenBLAS's kernels for this machine (a remote machine chooses its own); what the user set is forwarded.
if env KEEL_NO_REEXEC=1 OPENBLAS_CORETYPE=Haswell KEEL_OPENBLAS_KERNELS="by measurement: x" KEEL_EXAMPLE=1 \
    "$keel" launch --nproc 1 --dry-run -- train --config "$c" >"$work/out" 2>"$work/err" \
    && grep -q -- "-x KEEL_EXAMPLE " "$work/err" && ! grep -q -- "-x OPENBLAS_CORETYPE" "$work/err" \
    && ! grep -q -- "-x KEEL_OPENBLAS_KERNELS" "$work/err" && ! grep -q -- "-x KEEL_NO_REEXEC" "$work/err" \
    && env KEEL_NO_REEXEC=1 OPENBLAS_CORETYPE=SkylakeX "$keel" launch --nproc 1 --dry-run -- train --config "$c" \
        >"$work/out" 2>"$work/err" && grep -q -- "-x KEEL_NO_REEXEC " "$work/err" && grep -q -- "-x OPENBLAS_CORETYPE " "$work/err"; then
    pass "launch forwards the user's KEEL_*/OPENBLAS_* variables, not keel's own kernel choice"
else
    fail "launch forwards the user's KEEL_*/OPENBLAS_* variables, not keel's own kernel choice: $(cat "$work/err")"
fi

# torchrun-style variables without an MPI launcher: a clear error instead of N independent runs.
if RANK=0 WORLD_SIZE=2 "$keel" train --config "$c" --out "$work/torchrun" >"$work/out" 2>"$work/err"; then
    fail "torchrun variables without MPI are refused"
elif grep -q "^Error: torchrun variables say this job has 2 processes but MPI sees 1" "$work/err"; then
    pass "torchrun variables without MPI are refused"
else
    fail "torchrun variables without MPI are refused"
fi

# Rank 1 may stop before an operation (the others see it never started) or in the middle of one (it no
# longer answers pings); either way rank 0 must name it.
fault "a hung rank stops the job, named" STOP 5 30 "^Error: rank 0: '.*' did not finish within 5 s: rank 1 (never reported starting it|has not communicated|started it but does not respond)" "$c"
fault "a killed rank stops the job, named" KILL 60 60 "process rank 1 .*signal 9" "$c"

# keel dpo on data-parallel replicas: two ranks taking one pair each per micro-batch log the losses of one process
# taking both (the gradients summed over the step's pairs on every rank, the metrics averaged).
dpo_fixture="$here/../Reference/dpo_trl"
dpo=(dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --no-shuffle --set training.grad_accum=2
     --set training.steps=6 --set training.seq_len=63 --set training.lr=1e-3 --set training.min_lr=1e-3)
if "$keel" import hf "$dpo_fixture/model" --out "$work/dpo-base" >"$work/out" 2>"$work/err" \
    && "$keel" "${dpo[@]}" --out "$work/dpo-one" --set training.batch_size=2 >"$work/out" 2>"$work/err" \
    && "${mpi[@]}" -np 2 "$keel" "${dpo[@]}" --out "$work/dpo-two" --set training.batch_size=1 --set checkpoint.every=3 >"$work/out" 2>"$work/err" \
    && grep -q "6 steps of 4 pairs (.*), lr 0.001, 2 processes" "$work/err" \
    && python3 "$here/compare_losses.py" "$work/dpo-one/metrics.jsonl" "$work/dpo-two/metrics.jsonl" 6 1e-5 >"$work/err" 2>&1; then
    pass "dpo on 2 data-parallel ranks logs one process's losses ($(cat "$work/err"))"
else
    fail "dpo on 2 data-parallel ranks logs one process's losses"
fi
# Processes that find different newest checkpoints to resume from (here: two directories, as a machine whose view of a
# shared one lags would see it) are refused, not trained on from different steps.
cp -r "$work/dpo-two" "$work/dpo-lag" && rm -r "$work/dpo-lag/checkpoints/step_00000006"
"${mpi[@]}" -np 1 "$keel" "${dpo[@]}" --resume --out "$work/dpo-two" --set training.steps=8 --set distributed.timeout_s=10 \
    : -np 1 "$keel" "${dpo[@]}" --resume --out "$work/dpo-lag" --set training.steps=8 --set distributed.timeout_s=10 >"$work/out" 2>"$work/err"
status=$?
if [ $status -ne 0 ] && grep -q "^Error: rank [01]: --resume: the job's processes found different newest valid checkpoints in .* (of steps 3 to 6)" "$work/err" \
    && [ ! -e "$work/dpo-two/checkpoints/step_00000008" ]; then
    pass "dpo --resume on processes that found different newest checkpoints is refused"
else
    fail "dpo --resume on processes that found different newest checkpoints is refused (exit $status): $(grep '^Error' "$work/err")"
fi
# A fine-tuning job that diverges stops with status 3 (not restarted by keel launch), every rank naming the step and
# the last checkpoint, which rank 0 wrote.
"${mpi[@]}" -np 2 "$keel" "${dpo[@]}" --out "$work/dpo-nan" --set training.batch_size=1 --set training.lr=1e30 --set training.weight_decay=0.0 \
    --set training.min_lr=1e30 --set training.grad_clip=0 --set checkpoint.every=1 >"$work/out" 2>"$work/err"
status=$?
if [ $status -eq 3 ] && [ -d "$work/dpo-nan/checkpoints/step_00000001" ] && ( for rank in 0 1; do
        grep -q "^Error: rank $rank: training diverged: loss is NaN at step 2; the last good checkpoint is $work/dpo-nan/checkpoints/step_00000001$" "$work/err" || exit 1
    done ); then
    pass "a diverged dpo job exits with status 3, every rank naming the step and the last checkpoint"
else
    fail "a diverged dpo job exits with status 3, every rank naming the step and the last checkpoint (exit $status): $(grep '^Error' "$work/err")"
fi

# keel reward train likewise: the head's gradient and the transformer's summed over the ranks.
reward=(reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" --set training.grad_accum=2
        --set training.steps=6 --set training.seq_len=64 --set training.lr=1e-3)
if "$keel" "${reward[@]}" --out "$work/reward-one" --set training.batch_size=2 >"$work/out" 2>"$work/err" \
    && "${mpi[@]}" -np 2 "$keel" "${reward[@]}" --out "$work/reward-two" --set training.batch_size=1 >"$work/out" 2>"$work/err" \
    && python3 "$here/compare_losses.py" "$work/reward-one/metrics.jsonl" "$work/reward-two/metrics.jsonl" 6 1e-5 >"$work/err" 2>&1; then
    pass "reward train on 2 data-parallel ranks logs one process's losses ($(cat "$work/err"))"
else
    fail "reward train on 2 data-parallel ranks logs one process's losses"
fi

echo "mpi tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
