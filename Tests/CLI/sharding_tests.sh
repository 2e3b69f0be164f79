#!/usr/bin/env bash
# Fully-sharded data parallelism under OpenMPI's mpirun: ZeRO-2 (gradients sharded) and ZeRO-3 (parameters too,
# PyTorch's FSDP), alone and with tensor parallelism, train the single process's model (per-step losses) and
# export its weights; the data group's traffic is the analytic volume; a ZeRO-3 run resumes bit for bit and its
# checkpoint resumes on one process; each stage lowers the measured peak memory of a rank by what it no longer
# holds; layouts that cannot work are refused naming the key.
# Usage: Tests/CLI/sharding_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: sharding_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

common=("${layouts[@]}")

for arch in gpt2 llama; do
    config "$work/$arch.toml" "$arch" 4
    c="$work/$arch.toml"
    kv=$([ "$arch" = llama ] && echo 2 || echo 4)
    # (tp, dp, ZeRO stage)
    for layout in "1 4 2" "1 4 3" "2 2 3"; do
        read -r tp dp zero <<<"$layout"
        reference="$work/$arch-ref-b$dp"
        [ -d "$reference" ] || run "$arch reference, batch $dp" "$keel" train --config "$c" --out "$reference" \
            "${common[@]}" --set model.n_kv_head=$kv --set training.batch_size=$dp || continue
        name="$arch ZeRO-$zero tp=$tp dp=$dp"
        out="$work/$arch-z$zero-$tp-$dp"
        run "$name" "${mpi[@]}" -np $((tp * dp)) "$keel" train --config "$c" --out "$out" "${common[@]}" \
            --set model.n_kv_head=$kv --set parallel.tp=$tp --set distributed.zero_stage=$zero || continue
        same_losses "$name = one process × batch $dp" "$reference" "$out" $steps
        export_matches "$name checkpoint exports the single-process weights" "$reference" "$out"
    done
done

# ZeRO-3 gathers parameters over the data group for every forward, validation's too. A validation split of one
# window gives replica 0 a micro-batch and the other three none; every replica still runs as many forwards (the
# extra ones weigh nothing), so the collectives pair up and the validation losses are the single process's.
validation=(--set training.steps=2 --set training.eval_every=2 --set data.val_fraction=0.0005 --set model.n_kv_head=4)
if run "gpt2 reference with one validation window" "$keel" train --config "$work/gpt2.toml" --out "$work/z3val-ref" \
        "${common[@]}" "${validation[@]}" --set training.batch_size=4 \
    && run "ZeRO-3 dp=4 with one validation window" "${mpi[@]}" -np 4 "$keel" train --config "$work/gpt2.toml" \
        --out "$work/z3val" "${common[@]}" "${validation[@]}" --set distributed.zero_stage=3; then
    cp "$work/err" "$work/z3val.err"
    python3 - "$work/z3val-ref/metrics.jsonl" "$work/z3val/metrics.jsonl" "$work/z3val.err" >"$work/err" 2>&1 <<'PY' \
        && pass "ZeRO-3 validates an uneven split as one process does" || fail "ZeRO-3 validates an uneven split as one process does"
import json, re, sys
held = int(re.search(r"(\d+) validation tokens", open(sys.argv[3]).read()).group(1))
assert held < 2 * 17, f"{held} validation tokens: more than one window of 17, so the split is not uneven"
ref, z3 = ([(r["step"], r["val_loss"]) for r in map(json.loads, open(f)) if "val_loss" in r] for f in sys.argv[1:3])
assert len(ref) == 2 and [s for s, _ in ref] == [s for s, _ in z3], (ref, z3)
assert all(abs(a - b) <= 1e-5 * abs(a) for (_, a), (_, b) in zip(ref, z3)), (ref, z3)
PY
fi

# The data group's traffic on rank 0, counted by the communicator, is the analytic volume. Per micro-batch every
# gradient bucket is reduce-scattered (P floats in all); ZeRO-3 also gathers each part's parameters before it
# runs, forward (embedding, blocks, head: final norm and output weight — GPT-2's is the token table) and backward
# (head's final norm, blocks), rank 0 contributing the part's floats inside its range [0, P/4). ZeRO-2 instead
# all-gathers the updated parameters once per step (P/4 floats from rank 0). Every step also averages the loss
# and sums the gradient norm (a double each). The flat layout comes from the tensor offsets of the checkpoint's
# model converted to one file (in the order of the parameter buffer).
if "$keel" checkpoint convert "$work/gpt2-ref-b4" --out "$work/gpt2-ref.safetensors" >/dev/null 2>"$work/err" \
    && "$keel" checkpoint convert "$work/llama-ref-b4" --out "$work/llama-ref.safetensors" >/dev/null 2>"$work/err" \
    && python3 - "$work" >"$work/err" 2>&1 <<'PY'
import json, re, struct, sys
work, micro_batches, ranks = sys.argv[1], 2, 4
for arch in ("gpt2", "llama"):
    with open(f"{work}/{arch}-ref.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    spans = {name: (t["data_offsets"][0] // 4, t["data_offsets"][1] // 4) for name, t in header.items() if name != "__metadata__"}
    total = max(end for _, end in spans.values())
    own = (0, total // ranks)
    def inside(names):  # floats of these tensors in rank 0's range
        return sum(max(0, min(spans[n][1], own[1]) - max(spans[n][0], own[0])) for n in names)
    block = lambda n: re.search(r"\.(h|layers)\.\d+\.", n)
    embedding = [n for n in spans if not block(n) and ("wte" in n or "wpe" in n or "embed_tokens" in n)]
    norm = [n for n in spans if not block(n) and ("ln_f" in n or n == "model.norm.weight")]
    output = [n for n in spans if n == "lm_head.weight"] or [n for n in spans if "wte" in n]
    blocks = [n for n in spans if block(n)]
    forward, backward = inside(embedding) + inside(blocks) + inside(norm) + inside(output), inside(norm) + inside(blocks)
    expected = {2: 4 * (micro_batches * total + own[1]) + 16,
                3: 4 * micro_batches * (total + forward + backward) + 16}
    for zero, value in expected.items():
        counted = [json.loads(l)["comm_data_bytes"] for l in open(f"{work}/{arch}-z{zero}-1-4/metrics.jsonl") if '"loss"' in l]
        assert len(counted) == 30 and set(counted) == {value}, (arch, zero, set(counted), value)
        print(f"{arch} ZeRO-{zero}: {value}", end="; ")
print("bytes per step")
PY
then pass "data-parallel traffic per step equals the analytic volume ($(cat "$work/err"))"
else fail "data-parallel traffic per step equals the analytic volume"; fi

c="$work/gpt2.toml"
common+=(--set model.n_kv_head=4)
# Resume: a ZeRO-3 run, and its checkpoint on one process; then Llama with tensor parallelism under ZeRO-3 (each
# rank restores only its range of its tensor pieces).
resumes "ZeRO-3" 4 "$work/gpt2-ref-b4" "--set distributed.zero_stage=0 --set training.batch_size=4" \
    --config "$c" "${common[@]}" --set distributed.zero_stage=3
resumes "Llama tp=2 × dp=2 ZeRO-3" 4 "$work/llama-ref-b2" "--set parallel.tp=1 --set distributed.zero_stage=0 --set training.batch_size=2" \
    --config "$work/llama.toml" "${layouts[@]}" --set model.n_kv_head=2 --set parallel.tp=2 --set distributed.zero_stage=3

# Memory, measured: the peak resident memory of ranks 1-3 (rank 0 also keeps the logs and writes the manifests)
# of a 9.6 M-parameter GPT-2. ZeRO-2 no longer holds the whole gradient (4·P bytes), ZeRO-3 no longer the 3/4 of
# the parameters outside its range (3·P bytes); each keeps a few buckets and parts in flight, so at least half
# of that must go, and no more than all of it.
for zero in 1 2 3; do
    run "ZeRO memory, stage $zero" "${mpi[@]}" -np 4 sh -c \
        '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$work/rss-z$zero" \
        "$keel" train --config "$c" --out "$work/zero-mem-$zero" --set distributed.zero_stage=$zero \
        --set model.n_layer=12 --set model.d_model=256 --set model.n_head=4 --set model.n_kv_head=4 \
        --set training.steps=2 --set training.batch_size=1 --set distributed.bucket_mb=1
done
if python3 - "$work" >"$work/err" 2>&1 <<'PY'
import sys
work = sys.argv[1]
parameters = 257 * 256 + 32 * 256 + 12 * (12 * 256 * 256 + 13 * 256) + 2 * 256   # GPT-2, byte vocabulary
rss = {z: [int(open(f"{work}/rss-z{z}.{r}").read()) * 1024 for r in (1, 2, 3)] for z in (1, 2, 3)}
for lower, expected in ((2, 4 * parameters), (3, 3 * parameters)):
    saved = [a - b for a, b in zip(rss[lower - 1], rss[lower])]
    print(f"ZeRO-{lower} saves " + ", ".join(f"{s / 2**20:.1f}" for s in saved) + f" MiB (at most {expected / 2**20:.1f})", end="; ")
    assert all(0.5 * expected <= s <= 1.05 * expected for s in saved), (lower, saved, expected)
PY
then
    pass "ZeRO-2 and ZeRO-3 lower each rank's measured peak memory by the gradients and parameters they shard ($(cat "$work/err"))"
else
    fail "ZeRO-2 and ZeRO-3 lower each rank's measured peak memory by the gradients and parameters they shard"
fi

refused "ZeRO-3 with pipeline parallelism" "distributed.zero_stage (3) must be 0 or 1 with pipeline parallelism" \
    "$keel" train --config "$c" --out "$work/z3pp" "${common[@]}" --set parallel.pp=2 --set distributed.zero_stage=3
refused "an unknown ZeRO stage" "distributed.zero_stage must be 0 (nothing sharded)" \
    "$keel" train --config "$c" --out "$work/z4" "${common[@]}" --set distributed.zero_stage=4

echo "sharding tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
