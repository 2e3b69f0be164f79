#!/usr/bin/env bash
# keel plan through the real binary: the ranked table, JSON, a TOML file with flags over it, the published-run
# validation, a sweep with its chart, this machine as a device, and bad input (one error line each).
# Usage: Tests/CLI/plan_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: plan_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cli_common.sh"

expect_ok "plan of Llama 3 8B on 64 H100s" "$keel" plan --model llama3-8b --gpus 64 --seq-len 4096 --global-batch 256 --top 5
grep -q "^1  .*best$" "$work/out" && grep -q "The best layout of each strategy" "$work/out" \
    && [ "$(grep -c '^[1-5]  tp' "$work/out")" -eq 5 ] && pass "plan ranks five layouts and names the best of each strategy" \
    || fail "plan ranks five layouts and names the best of each strategy"

expect_ok "plan --json" "$keel" plan --model llama3-8b --gpus 64 --seq-len 4096 --global-batch 256 --top 7 --json
cp "$work/out" "$work/plan.json"
check "plan --json: 7 layouts, fastest first, all fitting, parts adding up to the step" \
    "(p := json.load(open(sys.argv[1]))) and len(p['layouts']) == 7 and all(l['fits'] for l in p['layouts']) \
     and [l['time_seconds']['step'] for l in p['layouts']] == sorted(l['time_seconds']['step'] for l in p['layouts']) \
     and all(abs(sum(v for k, v in l['time_seconds'].items() if k != 'step') - l['time_seconds']['step']) < 1e-9 * l['time_seconds']['step'] for l in p['layouts']) \
     and all(l['memory_bytes']['total'] <= l['memory_bytes']['limit'] for l in p['layouts']) \
     and p['workload']['parameters'] == 8030261248 and p['considered'] >= p['fitting'] > 7" "$work/plan.json"

# Tokens per second, MFU and model FLOPs agree with each other (6·N + attention per token, over 64 × 989 TFLOP/s).
check "plan --json: the bytes each device sends, by kind and between nodes" \
    "(l := json.load(open(sys.argv[1]))['layouts']) and all(abs(sum(v for k, v in x['traffic_bytes_per_device'].items() if k not in ('total', 'between_nodes')) - x['traffic_bytes_per_device']['total']) < 1 \
     and 0 <= x['traffic_bytes_per_device']['between_nodes'] <= x['traffic_bytes_per_device']['total'] for x in l) and any(x['traffic_bytes_per_device']['between_nodes'] > 0 for x in l)" "$work/plan.json"
check "plan --json: MFU is the model's FLOPs over the cluster's peak" \
    "(l := json.load(open(sys.argv[1]))['layouts'][0]) and abs(l['tokens_per_second'] * (3 * (32 * (2 * 218103808 + 4 * 4096 * 4096) + 2 * 4096 * 128256)) / (64 * 989e12) - l['mfu']) < 1e-9" \
    "$work/plan.json"

cat >"$work/plan.toml" <<'TOML'
[model]
preset = "llama3-70b"

[workload]
seq_len = 8192
global_batch_tokens = 16777216

[cluster]
accelerator = "h100-sxm"
gpus = 1024
inter_node = "roce-400"

[layout]
strategies = ["pp+tp"]
TOML
expect_ok "plan from a TOML file" "$keel" plan --config "$work/plan.toml" --json --top 3
check "the file's model, batch (tokens → 2,048 sequences), cluster and strategy" \
    "(p := json.load(open(sys.argv[1]))) and p['workload']['model'] == 'llama3-70b' and p['workload']['global_batch'] == 2048 \
     and p['workload']['devices'] == 1024 and p['workload']['inter_node'] == 'roce-400' and all(l['strategy'] == 'pp+tp' for l in p['layouts'])" "$work/out"
expect_ok "flags over the file" "$keel" plan --config "$work/plan.toml" --gpus 512 --pp 4 --json --top 3
check "flags win: 512 devices, pp 4" \
    "(p := json.load(open(sys.argv[1]))) and p['workload']['devices'] == 512 and all(l['pp'] == 4 for l in p['layouts'])" "$work/out"
# cluster.memory_gb is in the datasheets' GB (GiB), as the presets are: 80 is the H100's own 85.9e9 bytes, not 80e9.
expect_ok "memory_gb = 80 on an H100" "$keel" plan --model llama3-8b --gpus 8 --set cluster.memory_gb=80 --json --top 1
check "memory_gb = 80 is the preset's 80 GiB" "abs(json.load(open(sys.argv[1]))['workload']['memory_gb'] - 85.899345920) < 1e-9" "$work/out"
expect_error "a planner input too large to count layouts for" "devices at most 1048576" \
    "$keel" plan --model llama3-8b --set cluster.nodes=1000000000000
expect_error "a micro-batch bound that would overflow" "max_micro_batch_size must be from 1 to 1048576" \
    "$keel" plan --model llama3-8b --gpus 8 --set layout.max_micro_batch_size=9223372036854775807

expect_ok "plan --validate" "$keel" plan --validate --json
check "every published run within 15% with one calibration constant" \
    "(v := json.load(open(sys.argv[1]))) and len(v['runs']) == 12 and all(abs(r['error']) < 0.15 for r in v['runs']) \
     and {r['published_tflops'] for r in v['runs']} >= {137, 163, 430, 400}" "$work/out"

expect_ok "plan --sweep-gpus with a chart" "$keel" plan --model llama3-70b --seq-len 8192 --global-batch 2048 \
    --sweep-gpus 256,1024 --strategy pp+tp,fsdp+tp --plot "$work/sweep.svg"
grep -q "^256  *pp+tp" "$work/out" && grep -q "^1024 *fsdp+tp" "$work/out" && grep -q "<polyline" "$work/sweep.svg" \
    && [ "$(grep -c '<polyline' "$work/sweep.svg")" -eq 2 ] && pass "the sweep lists each strategy per size and charts two lines" \
    || fail "the sweep lists each strategy per size and charts two lines"
# A size where no layout divides the batch (4096 devices: at least 128 data-parallel ways for a batch of 64) is a
# row saying so; the other sizes are planned.
expect_ok "plan --sweep-gpus with a size no layout divides" "$keel" plan --model gpt2-124m --global-batch 64 --sweep-gpus 8,4096
grep -q "^8  *[a-z+]" "$work/out" && grep -q "^4096 .*none fits or divides" "$work/out" \
    && pass "the size without a layout is a row of its own" || fail "the size without a layout is a row of its own"

# This machine as one device: measured, fp32, and a model small enough to fit.
expect_ok "plan on this CPU" "$keel" plan --model gpt2-124m --seq-len 256 --global-batch 16 --accelerator this-cpu --gpus 1 --json --top 1
check "this-cpu: one device, fp32 state, measured rates" \
    "(p := json.load(open(sys.argv[1]))) and p['workload']['devices'] == 1 and p['workload']['peak_tflops'] > 0.001 \
     and p['layouts'][0]['memory_bytes']['optimizer_state'] == 8 * p['workload']['parameters']" "$work/out"

expect_error "two processes of this CPU need the measured link" "collectives --link" \
    "$keel" plan --model gpt2-124m --accelerator this-cpu --gpus 2
expect_error "this CPU is one machine" "cluster.nodes must be 1" "$keel" plan --model gpt2-124m --accelerator this-cpu --nodes 2
expect_error "a sweep size that is not whole nodes" "12 devices are not whole nodes of 8" \
    "$keel" plan --model llama3-8b --seq-len 4096 --global-batch 256 --sweep-gpus 8,12
expect_error "no devices" "cluster.gpus must be at least 1" "$keel" plan --model llama3-8b --gpus 0
expect_error "GPT-2 untied" "always its token embedding" "$keel" plan --model gpt2-xl --set model.tie_embeddings=false
expect_error "unknown model preset" "unknown model preset 'llama4'" "$keel" plan --model llama4 --gpus 8
expect_error "unknown accelerator" "unknown accelerator 'tpu-v5'" "$keel" plan --model llama3-8b --accelerator tpu-v5
expect_error "unknown link" "unknown link 'ethernet'" "$keel" plan --model llama3-8b --inter-node ethernet
expect_error "misspelt key" "unknown key 'cluster.gpu'" "$keel" plan --model llama3-8b --set cluster.gpu=8
expect_error "both batch keys" "not both" "$keel" plan --model llama3-8b --global-batch 8 --global-batch-tokens 4096
expect_error "devices not a multiple of a node" "multiple of cluster.gpus_per_node" "$keel" plan --model llama3-8b --gpus 12
expect_error "no model" "give a model" "$keel" plan --gpus 8
expect_error "a batch no layout divides" "no layout of 8 devices" "$keel" plan --model llama3-8b --gpus 8 --global-batch 3 --tp 1 --pp 1
expect_error "an explicit shape missing a size" "model.n_head is needed" "$keel" plan --set model.arch=\"llama\" --set model.n_layer=4 --set model.d_model=64
expect_error "heads that do not divide the width" "multiple of the heads" "$keel" plan --model llama3-8b --set model.n_head=31
expect_error "unknown strategy" "unknown strategy 'zero'" "$keel" plan --model llama3-8b --strategy zero
expect_error "a config file that is not there" "cannot read" "$keel" plan --config "$work/nope.toml"
expect_ok "a model that fits nowhere" "$keel" plan --model llama3-405b --gpus 8 --global-batch 8
grep -q "^No layout fits" "$work/out" && pass "a plan where nothing fits says so and lists the smallest" || fail "a plan where nothing fits says so and lists the smallest"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
