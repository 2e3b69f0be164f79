#!/usr/bin/env python3
"""PyTorch side of the peer benchmark: one process, one config, `--warmup` + `--steps` training steps.

    python scripts/bench/peer/torch_bench.py --preset small --steps 3 --warmup 2 [--compile] [--autocast-bf16] [--json]

Prints one JSON line in the schema of `keel bench --json` (config, ms_per_step, tokens_per_step,
model_flops_per_step, peak_rss_mb) plus PyTorch-only fields (first_step_s, warmup_ms, rss_after_import_mb,
steady_peak_rss_mb, optimizer, threads, torch_version, compiled). peer.py runs it in a fresh process each round.

One step = zero_grad, forward on a random [B, T] token batch with random targets, mean cross-entropy, backward,
clip_grad_norm_(1.0), AdamW step; timed with perf_counter around the whole step (CPU: no synchronisation needed).
"""
import argparse
import json
import os
import re
import resource
import sys
import time


def system_busy_seconds():
    """CPU seconds all processes on the machine have spent busy so far (/proc/stat, every core)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def vm_kb(field):
    return int(re.search(rf"{field}:\s+(\d+)", open("/proc/self/status").read()).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile(model), mode default")
    parser.add_argument("--autocast-bf16", action="store_true",
                        help="forward and loss under torch.autocast('cpu', bfloat16): PyTorch's mixed precision, "
                             "the counterpart of keel --precision bf16 (fp32 weights and optimizer)")
    parser.add_argument("--optimizer", default="fused", choices=["fused", "foreach", "single"],
                        help="AdamW implementation: fused=True, foreach=True, or the per-tensor loop")
    parser.add_argument("--clip-foreach", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--threads", type=int, default=0, help="0: os.cpu_count()")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", action="store_true", help="one JSON line only (otherwise also a summary)")
    args = parser.parse_args()

    threads = args.threads or os.cpu_count()
    # Must precede `import torch` to bind the OpenMP and MKL pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from model import CONFIGS, Transformer, model_flops_per_step

    bench = CONFIGS[args.preset]
    rss_after_import = vm_kb("VmRSS")
    torch.manual_seed(args.seed)
    model = Transformer(bench.model)
    model.train()
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(0.1), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
        fused=args.optimizer == "fused", foreach=args.optimizer == "foreach")
    params = [p for p in model.parameters()]
    clip_foreach = {"auto": None, "on": True, "off": False}[args.clip_foreach]
    forward = torch.compile(model) if args.compile else model

    B, T, V = bench.batch, bench.seq, bench.model.vocab_size
    generator = torch.Generator().manual_seed(args.seed)
    batches = [(torch.randint(0, V, (B, T), generator=generator), torch.randint(0, V, (B, T), generator=generator))
               for _ in range(min(args.warmup + args.steps, 4))]

    def step(i):
        idx, targets = batches[i % len(batches)]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
            loss = forward(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=clip_foreach)
        optimizer.step()
        return time.perf_counter() - start, loss.item()

    warmup_s, losses = [], []
    for i in range(args.warmup):
        seconds, loss = step(i)
        if i == 0:  # lets peer.py apply its compile time limit to the first step alone
            print(json.dumps({"event": "first_step", "seconds": seconds}), file=sys.stderr, flush=True)
        warmup_s.append(seconds)
        losses.append(loss)
    # Peak RSS of the measured steps alone (resets VmHWM; the whole-process peak is kept in peak_rss_mb).
    peak_before = vm_kb("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        steady_ok = True
    except OSError:
        steady_ok = False
    measured = []
    busy0, own0, wall0 = system_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    for i in range(args.steps):
        seconds, loss = step(args.warmup + i)
        measured.append(seconds)
        losses.append(loss)
    steady_peak = vm_kb("VmHWM")
    busy1, own1, wall1 = system_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    # Share of the machine's CPU time that other processes used while the measured steps ran.
    foreign_cpu = max(0.0, (busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * os.cpu_count())
    own_cpu_util = (own1 - own0) / (wall1 - wall0)

    # PyTorch's own matrix-product speed (MKL sgemm) on the MLP's first product, [B·T, d] × [d, d_ff]:
    # the torch counterpart of Keel's sgemm_gflops, to tell BLAS speed from everything else.
    a = torch.randn(B * T, bench.model.d_model)
    w = torch.randn(bench.model.d_model, bench.model.d_ff)
    out = torch.empty(B * T, bench.model.d_ff)
    torch.mm(a, w, out=out)
    mm_times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, w, out=out)
        mm_times.append(time.perf_counter() - start)
    mm_gflops = 2 * B * T * bench.model.d_model * bench.model.d_ff / sorted(mm_times)[2] / 1e9

    result = {
        "config": args.preset,
        "ms_per_step": [s * 1e3 for s in measured],
        "tokens_per_step": bench.tokens_per_step,
        "model_flops_per_step": model_flops_per_step(bench),
        "peak_rss_mb": max(peak_before, steady_peak) / 1024,
        "steady_peak_rss_mb": steady_peak / 1024 if steady_ok else None,
        "rss_after_import_mb": rss_after_import / 1024,
        "warmup_ms": [s * 1e3 for s in warmup_s],
        "first_step_s": warmup_s[0] if warmup_s else None,
        "losses": losses,
        "torch_mm_gflops": mm_gflops,
        "torch_mm_shape": [B * T, bench.model.d_model, bench.model.d_ff],
        "foreign_cpu": foreign_cpu,
        "own_cpu_util": own_cpu_util,
        "compiled": args.compile,
        "autocast_bf16": args.autocast_bf16,
        "optimizer": args.optimizer,
        "clip_foreach": args.clip_foreach,
        "threads": threads,
        "ld_preload": os.environ.get("LD_PRELOAD"),
        "torch_version": torch.__version__,
    }
    print(json.dumps(result), flush=True)
    if not args.json:
        ms = sorted(result["ms_per_step"])
        print(f"{args.preset}: median {ms[len(ms) // 2]:.1f} ms/step, first step {warmup_s[0]:.1f} s, "
              f"peak RSS {result['peak_rss_mb']:.0f} MB, "
              f"other processes {100 * foreign_cpu:.0f}% of the CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
