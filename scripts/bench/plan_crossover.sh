#!/usr/bin/env bash
# Pipeline parallelism against FSDP/ZeRO-3 for Llama 3 70B and 405B on 1K–16K H100s at 16M tokens per step
# (Llama 3's batch: 2,048 sequences of 8,192), as keel plan predicts them: for each device count, the best layout of
# the pipeline family (pp, pp+tp) and of the FSDP family (fsdp, fsdp+tp), their MFU, and the bytes each device sends
# between nodes per step. With CHART_DIR, also the charts docs/planner.md shows (MFU of each strategy's best).
# Usage: scripts/bench/plan_crossover.sh [INTER_NODE_LINK] [CHART_DIR]   (default roce-400, no charts)
set -euo pipefail
cd "$(dirname "$0")/../.."
link=${1:-roce-400}
charts=${2:-}
swift build -c release --product keel >/dev/null
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
for model in llama3-70b llama3-405b; do
  plot=(); [ -n "$charts" ] && plot=(--plot "$charts/plan_${model}_${link}.svg")
  .build/release/keel plan --model $model --seq-len 8192 --global-batch 2048 --inter-node "$link" \
    --sweep-gpus 1024,2048,4096,8192,16384 --json "${plot[@]}" >"$w/sweep.json"
  python3 - "$w/sweep.json" <<'PY'
import json, sys
sweep = json.load(open(sys.argv[1]))
w = sweep["workload"]
print("\n%s on %s, %s between nodes, 16M tokens per step" % (w["model"], w["accelerator"], w["inter_node"]))
print("%7s  %-44s %6s %9s   %-42s %6s %9s  %s" % ("devices", "best pipeline layout", "MFU", "GB sent", "best FSDP layout",
                                              "MFU", "GB sent", "pipeline / FSDP"))
def cell(b, width):
    if b is None:
        return "%-*s %6s %9s" % (width, "none fits", "", "")
    return "%-*s %5.1f%% %9.1f" % (width, b["layout"], b["mfu"] * 100, b["inter_node_bytes"] / 1e9)
for point in sweep["points"]:
    def best(family):
        found = [b for b in point["best"] if b["strategy"] in family]
        return max(found, key=lambda b: b["mfu"]) if found else None
    pp, fsdp = best({"pp", "pp+tp"}), best({"fsdp", "fsdp+tp"})
    ratio = "%.2f×" % (pp["mfu"] / fsdp["mfu"]) if pp and fsdp else ""
    print("%7d  %s   %s  %s" % (point["devices"], cell(pp, 44), cell(fsdp, 42), ratio))
PY
done
