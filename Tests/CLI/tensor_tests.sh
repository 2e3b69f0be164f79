#!/usr/bin/env bash
# Tensor-parallel training under OpenMPI's mpirun: every (tp, pp, dp) layout, with and without sequence
# parallelism, trains the single process's model (per-step losses), its checkpoint exports the single process's
# weights, the tensor group's traffic is the analytic volume, and a tp that does not divide the model is refused
# naming the key.
# Usage: Tests/CLI/tensor_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: tensor_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/mpi_common.sh"

common=("${layouts[@]}")

for arch in gpt2 llama; do
    config "$work/$arch.toml" "$arch" 4
    c="$work/$arch.toml"
    # (tp, pp, dp, n_kv_head, sequence parallelism): Llama keeps grouped-query attention (2 kv heads for 4 query
    # heads), which at tp = 4 means each kv head is shared by two ranks.
    for layout in "4 1 1 2 false" "2 1 2 2 false" "2 2 1 2 false" "2 1 2 2 true" "2 2 1 2 true"; do
        read -r tp pp dp kv sp <<<"$layout"
        [ "$arch" = gpt2 ] && kv=4
        reference="$work/$arch-ref-kv$kv-b$dp"
        [ -d "$reference" ] || run "$arch reference, kv heads $kv, batch $dp" "$keel" train --config "$c" --out "$reference" \
            "${common[@]}" --set model.n_kv_head=$kv --set training.batch_size=$dp || continue
        name="$arch tp=$tp pp=$pp dp=$dp$([ "$sp" = true ] && echo " sequence-parallel")"
        out="$work/$arch-$tp-$pp-$dp$([ "$sp" = true ] && echo -sp)"
        run "$name" "${mpi[@]}" -np $((tp * pp * dp)) "$keel" train --config "$c" --out "$out" "${common[@]}" \
            --set model.n_kv_head=$kv --set parallel.tp=$tp --set parallel.pp=$pp --set parallel.sequence_parallel=$sp \
            || continue
        same_losses "$name = one process × batch $dp" "$reference" "$out" $steps
        export_matches "$name checkpoint exports the single-process weights" "$reference" "$out"
    done
done

# Supervised fine-tuning on packed prompt-completion pairs: each tensor rank's heads keep the documents apart, and
# the sequence-parallel embedding and norms take each token's position from its document (tp = 2, with and without
# sequence parallelism, equals one process).
config "$work/sft-base.toml" llama 4
if run "sft base run" "$keel" train --config "$work/sft-base.toml" --out "$work/sft-base" --set model.n_kv_head=2 \
    --set training.steps=1; then
    python3 -c '
import json, random
random.seed(5)
for i in range(300):
    a, b = random.randint(0, 999), random.randint(0, 99)
    print(json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b) if i % 2 else " ".join(str(a + b)) + " is the sum"}))' \
        >"$work/pairs.jsonl"
    sft=(--data "$work/pairs.jsonl" --set training.steps=10 --set training.lr=3e-3)
    run "sft reference" "$keel" sft --init-from "$work/sft-base" --out "$work/sft-ref" "${sft[@]}" && for sp in false true; do
        name="sft tp=2$([ "$sp" = true ] && echo " sequence-parallel")"
        run "$name" "${mpi[@]}" -np 2 "$keel" sft --init-from "$work/sft-base" --out "$work/sft-tp-$sp" "${sft[@]}" \
            --set parallel.tp=2 --set parallel.sequence_parallel=$sp \
            && same_losses "$name = one process" "$work/sft-ref" "$work/sft-tp-$sp" 10
    done
fi

# The tensor group's traffic, counted by the communicator, is the analytic volume: per micro-batch of N tokens,
# all-reduces of N × C floats for the embedding, two per block forward and two backward, and the head's input
# gradient; the loss's row maxima and sums (3 × N floats); then the gradient norm (one double) per step.
# With sequence parallelism each of those 4L + 2 all-reduces is a reduce-scatter (counted as the N × C floats
# it reduces) and an all-gather (counted as the N × C / tp floats each rank contributes): on a ring both move
# what the all-reduce moved. Each step then sums the norms' gradients over the group: 4L + 2 vectors of C for
# GPT-2 (LayerNorm weight and bias), 2L + 1 for Llama.
if python3 - "$work" >"$work/err" 2>&1 <<'PY'
import json, sys
layers, width, tokens, micro_batches, tp = 4, 32, 16, 2, 2
reductions = 4 * layers + 2
layouts = {"gpt2-2-1-2": (reductions * tokens * width, 0), "llama-2-1-2": (reductions * tokens * width, 0),
           "gpt2-2-1-2-sp": (reductions * tokens * width * (1 + 1 / tp), (4 * layers + 2) * width),
           "llama-2-1-2-sp": (reductions * tokens * width * (1 + 1 / tp), (2 * layers + 1) * width)}
for name, (activations, norms) in layouts.items():
    expected = 4 * micro_batches * (activations + 3 * tokens) + 8 + 4 * norms
    counted = [json.loads(l)["comm_tensor_bytes"] for l in open(f"{sys.argv[1]}/{name}/metrics.jsonl") if '"loss"' in l]
    assert len(counted) == 30 and set(counted) == {expected}, (name, set(counted), expected)
    print(f"{name}: {expected:.0f}", end="; ")
print("bytes per step")
PY
then pass "tensor-parallel traffic per step equals the analytic volume ($(cat "$work/err"))"
else fail "tensor-parallel traffic per step equals the analytic volume"; fi

c="$work/gpt2.toml"
common+=(--set model.n_kv_head=4)
# Resume: a tp = 2 × dp = 2 ZeRO-1 run, and its checkpoint on one process.
resumes "tp=2 × dp=2 ZeRO-1" 4 "$work/gpt2-ref-kv4-b2" "--set parallel.tp=1 --set distributed.zero_stage=0 --set training.batch_size=2" \
    --config "$c" "${common[@]}" --set parallel.tp=2 --set distributed.zero_stage=1

# --profile: rank 0's table of where a tp = 2 step went includes the tensor group's collectives.
if "${mpi[@]}" -np 2 "$keel" train --config "$c" --out "$work/profiled" "${common[@]}" --set training.steps=3 \
        --set parallel.tp=2 --profile >"$work/out" 2>"$work/err" \
    && grep -q "^tensor comm forward" "$work/out" && grep -q "^tensor comm backward" "$work/out" \
    && grep -q "^matmul forward" "$work/out" && grep -q "^step " "$work/out"; then
    pass "--profile shows a tp = 2 step's kernels and tensor collectives"
else
    cat "$work/out" >>"$work/err"
    fail "--profile shows a tp = 2 step's kernels and tensor collectives"
fi

refused "tp that does not divide the heads" "parallel.tp (3) must divide model.n_head (4)" \
    "$keel" train --config "$c" --out "$work/tp3" "${common[@]}" --set parallel.tp=3
refused "sequence parallelism without tensor parallelism" "parallel.sequence_parallel needs tensor parallelism" \
    "$keel" train --config "$c" --out "$work/sp1" "${common[@]}" --set parallel.sequence_parallel=true
refused "tensor parallelism outside a launcher" "parallel.pp × parallel.tp × parallel.dp needs 2 processes" \
    "$keel" train --config "$c" --out "$work/tp2" "${common[@]}" --set parallel.tp=2

echo "tensor tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
