#!/usr/bin/env python3
"""Stand-in for `keel bench` that tests the peer script without building Keel: same arguments, same JSON
line, made-up timings (the model FLOPs at 100 GFLOP/s, 200 with --precision bf16), and "stub": true, which makes peer.py print a
warning. Tests only.

    bash scripts/bench/peer/run.sh small --keel scripts/bench/peer/keel_stub.py
"""
import argparse
import json
import os
import random
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from configs import CONFIGS, model_flops_per_step  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("command", choices=["bench"])
parser.add_argument("--preset", required=True, choices=sorted(CONFIGS))
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--json", action="store_true")
parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
args = parser.parse_args()

bench = CONFIGS[args.preset]
flops = model_flops_per_step(bench)
print(json.dumps({
    "config": args.preset,
    "ms_per_step": [flops / (200e9 if args.precision == "bf16" else 100e9) * 1e3 * random.uniform(0.97, 1.03) for _ in range(args.steps)],
    "tokens_per_step": bench.tokens_per_step,
    "model_flops_per_step": flops,
    "sgemm_gflops": 150.0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "precision": args.precision,
    "cpu": "stub CPU",
    "instruction_sets": ["avx2"],
    "threads": int(os.environ.get("KEEL_THREADS", os.cpu_count())),
    "blas": "stub BLAS",
    **({"bf16_engine": "stub"} if args.precision == "bf16" else {}),
    "stub": True,
}))
