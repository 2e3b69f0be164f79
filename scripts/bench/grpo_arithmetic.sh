#!/usr/bin/env bash
# GRPO on generated additions: RUN (a chat model, e.g. SmolLM2-135M-Instruct imported from its GGUF) answers
# "What is A + B? Reply with only the number." — rewarded 1 when its reply's last number is the sum — and is
# optimised for STEPS steps of 8 prompts × 4 sampled replies. Held-out prompts are answered greedily every 10 steps.
#
#   bash scripts/bench/grpo_arithmetic.sh RUN OUT [STEPS] [LR]
#
# Writes OUT/tasks.jsonl (1,000 problems, every 16th held out: 62), the run in OUT/run, and OUT/curve.svg: the mean
# reward of each step's samples, the held-out greedy reward, and the KL to the starting weights.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:?usage: grpo_arithmetic.sh RUN OUT [STEPS] [LR]}
out=${2:?usage: grpo_arithmetic.sh RUN OUT [STEPS] [LR]}
steps=${3:-40}
lr=${4:-1e-5}
keel=${KEEL:-.build/release/keel}
[ -x "$keel" ] || { echo "grpo_arithmetic: build keel first (swift build -c release), or set KEEL" >&2; exit 1; }
mkdir -p "$out"
python3 scripts/gen/arithmetic_chat.py "$out/tasks.jsonl" --count 1000 --seed 11 --tasks
"$keel" grpo --init-from "$run" --data "$out/tasks.jsonl" --out "$out/run" --group-size 4 --max-new-tokens 20 \
    --set training.batch_size=8 --set training.steps="$steps" --set training.seq_len=128 --set training.lr="$lr" \
    --set training.min_lr="$lr" --set training.warmup_steps=0 --set data.val_fraction=0.0625 --set training.eval_every=10 \
    --set logging.every=1
python3 - "$out/run/metrics.jsonl" "$out/curve.svg" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
steps = [(r["step"], r["reward"], r["kl"]) for r in records if "reward" in r]
held = [(r["step"], r["val_reward"]) for r in records if "val_reward" in r]
width, height, left, bottom, top = 640, 320, 50, 40, 20
last = max(s for s, *_ in steps)
x = lambda s: left + (width - left - 20) * s / last
y = lambda v, high=1.0: height - bottom - (height - bottom - top) * v / high
kl_top = max(max(k for *_, k in steps), 1e-9)
def path(points, colour, high=1.0, dash=""):
    d = " ".join(("M" if i == 0 else "L") + f"{x(s):.1f},{y(v, high):.1f}" for i, (s, v) in enumerate(points))
    return f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" {dash}/>'
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<line x1="{left}" y1="{y(0)}" x2="{width - 20}" y2="{y(0)}" stroke="black"/>',
       f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>']
for v in (0, 0.25, 0.5, 0.75, 1):
    svg.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    svg.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - 20}" y2="{y(v):.1f}" stroke="#ddd"/>')
for s in range(0, last + 1, max(1, last // 8)):
    svg.append(f'<text x="{x(s):.1f}" y="{height - bottom + 16}" text-anchor="middle">{s}</text>')
svg.append(f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">step</text>')
svg.append(path([(s, r) for s, r, _ in steps], "#1f77b4"))
svg.append(path(held, "#d62728"))
svg.append(path([(s, k) for s, _, k in steps], "#7f7f7f", kl_top, 'stroke-dasharray="4 3"'))
for i, (label, colour) in enumerate([("reward of the step's samples", "#1f77b4"), ("held-out greedy reward", "#d62728"),
                                     (f"KL to the start (per token, max {kl_top:.3f})", "#7f7f7f")]):
    svg.append(f'<rect x="{left + 10}" y="{top + 4 + 16 * i}" width="12" height="3" fill="{colour}"/>')
    svg.append(f'<text x="{left + 28}" y="{top + 9 + 16 * i}">{label}</text>')
svg.append("</svg>")
open(sys.argv[2], "w").write("\n".join(svg) + "\n")
first, final = held[0][1], held[-1][1]
print(f"held-out greedy reward: {first:.3f} at step 0 → {final:.3f} at step {held[-1][0]}; "
      f"samples' reward {sum(r for _, r, _ in steps[:5]) / 5:.3f} (first 5 steps) → {sum(r for _, r, _ in steps[-5:]) / 5:.3f} (last 5); "
      f"KL at the end {steps[-1][2]:.4f}")
PY
