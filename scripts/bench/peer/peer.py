#!/usr/bin/env python3
"""Training-step speed: Keel against an identical PyTorch model (eager and torch.compile), run alternately.

    scripts/bench/peer/run.sh [CONFIG...] [--rounds 5] [--skip-compile] [--json OUT] [--keel PATH]
    (or, inside .venv-bench: python scripts/bench/peer/peer.py --configs small,gpt2-124m ...)

For each config and each of --rounds rounds, fresh processes run one after the other:
  1. `keel bench --preset NAME --steps S --warmup W --json` (--keel-precision: fp32, bf16 or both)
  2. torch_bench.py (PyTorch eager), W warm-up steps then S measured steps
  3. torch_bench.py --compile (torch.compile(model), compilation inside the warm-up, so excluded)
  4. with --torch-bf16: torch_bench.py --autocast-bf16 (eager under torch.autocast bfloat16)
Each process's median ms/step is its round's figure; the table gives the median over rounds, and the ratio
torch_ms / keel_ms per round (against each Keel side) as min / median / max (> 1: Keel is faster). Peak RSS is each process's
ru_maxrss from wait4. The share of CPU time other processes used during each measurement is recorded, and a
warning printed when it passes --max-foreign, since on a 2-core machine any other load distorts the figures.
"""
import argparse
import hashlib
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from configs import CONFIGS, model_flops_per_step, parameter_count  # noqa: E402


def system_busy_seconds():
    """CPU seconds all processes on the machine have spent busy so far (/proc/stat, every core)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(limit_s, threshold):
    """Waits (at most limit_s) until other processes use under `threshold` of the CPU over a 2 s window."""
    start = time.perf_counter()
    while True:
        busy0 = system_busy_seconds()
        time.sleep(2)
        load = (system_busy_seconds() - busy0) / (2 * os.cpu_count())
        if load < threshold:
            return True
        if time.perf_counter() - start > limit_s:
            print(f"  (machine still {100 * load:.0f}% busy after {limit_s:.0f} s of waiting; measuring anyway)",
                  file=sys.stderr)
            return False


ALLOCATORS = {
    "jemalloc": ["libjemalloc.so.2", "libjemalloc.so"],
    "tcmalloc": ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4"],
}
JEMALLOC_CONF = "oversize_threshold:1,background_thread:false,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"
LIBRARY_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]


def allocator_library(choice):
    """(name, path) of the malloc to preload into the PyTorch process; glibc's when none is found or chosen."""
    names = ["jemalloc", "tcmalloc"] if choice == "auto" else [] if choice == "glibc" else [choice]
    for name in names:
        for directory in LIBRARY_DIRS:
            for lib in ALLOCATORS[name]:
                if os.path.exists(os.path.join(directory, lib)):
                    return name, os.path.join(directory, lib)
        if choice != "auto":
            sys.exit(f"peer.py: no {name} library in {', '.join(LIBRARY_DIRS)} (apt-get install libjemalloc2 "
                     "or libtcmalloc-minimal4)")
    return "glibc", None


def run_child(cmd, env, first_step_timeout=None, timeout=None):
    """Runs cmd in its own session and returns rc, stdout, stderr, wall_s, cpu_s, maxrss_mb (the child and the
    descendants it reaped, from wait4), foreign_cpu (other processes' share of the machine meanwhile), and
    timed_out ("first step" or "total") where a limit was hit and the process group killed."""
    busy0, start = system_busy_seconds(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    streams = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    first_step_seen, timed_out = False, None
    open_fds = set(streams)
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 0.5)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            streams[fd].append(chunk)
            if fd == proc.stderr.fileno() and b'"event": "first_step"' in chunk:
                first_step_seen = True
        elapsed = time.perf_counter() - start
        if timed_out is None:
            if first_step_timeout and not first_step_seen and elapsed > first_step_timeout:
                timed_out = "first step"
            elif timeout and elapsed > timeout:
                timed_out = "total"
            if timed_out:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    busy = system_busy_seconds() - busy0
    return {
        "rc": proc.returncode,
        "stdout": b"".join(streams[proc.stdout.fileno()]).decode(errors="replace"),
        "stderr": b"".join(streams[proc.stderr.fileno()]).decode(errors="replace"),
        "wall_s": wall,
        "cpu_s": cpu,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "foreign_cpu": max(0.0, busy - cpu) / (wall * os.cpu_count()),
        "timed_out": timed_out,
    }


def last_json_line(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def measure(side, cmd, env, args, name):
    """One process of one side; returns the raw record (with "error" on failure)."""
    run = run_child(cmd, env,
                    first_step_timeout=args.compile_timeout if side == "compile" else None,
                    timeout=args.process_timeout)
    record = {"cmd": cmd, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"], "maxrss_mb": run["maxrss_mb"],
              "process_foreign_cpu": run["foreign_cpu"]}
    if run["timed_out"]:
        limit = f"first step (compilation) over {args.compile_timeout:.0f} s" if run["timed_out"] == "first step" \
            else f"process over {args.process_timeout:.0f} s"
        record["error"] = f"killed: {limit}"
    elif run["rc"] != 0:
        record["error"] = f"exit status {run['rc']}: " + run["stderr"].strip()[-2000:]
    else:
        try:
            out = last_json_line(run["stdout"])
        except ValueError as e:
            record["error"] = f"{e}: {run['stdout'][-500:]!r}"
            return record
        record.update(out)
        record["median_ms"] = statistics.median(out["ms_per_step"])
        # The torch worker measures other processes' load over its measured steps alone; for Keel the
        # whole process stands in.
        record.setdefault("foreign_cpu", run["foreign_cpu"])
        if out.get("config") != name:
            record["error"] = f"reported config {out.get('config')!r}, expected {name!r}"
    return record


SIDE_LABELS = {"keel": "keel", "keel-bf16": "keel bf16", "eager": "torch eager", "compile": "torch compile",
               "eager-bf16": "torch eager bf16"}


def fmt_ratio(values):
    if not values:
        return "-"
    return f"{min(values):.2f}× / {statistics.median(values):.2f}× / {max(values):.2f}×"


def machine_info():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=HERE).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=HERE).stdout.strip())
    except OSError:
        rev, dirty = "?", None
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "git_rev": rev, "git_dirty": dirty}


def measured(record):
    """Whether one process's record holds a measurement: its median step, and no error."""
    return "median_ms" in record and "error" not in record


def keel_host(rounds):
    """What `keel bench --json` reported about the machine and its engines: the CPU, instruction sets, threads and
    fp32 library of its fp32 side (else its bf16 side), and the bf16 engine of its bf16 side; None when neither ran."""
    records = [r[k] for k in ("keel", "keel-bf16") for r in rounds if measured(r.get(k, {})) and "cpu" in r[k]]
    if not records:
        return None
    host = {key: records[0].get(key) for key in ("cpu", "instruction_sets", "threads", "blas")}
    host["instruction_sets"] = host["instruction_sets"] or []
    engines = [r["keel-bf16"]["bf16_engine"] for r in rounds
               if measured(r.get("keel-bf16", {})) and r["keel-bf16"].get("bf16_engine")]
    host["bf16_engine"] = engines[0] if engines else None
    return host


def threads_text(count):
    """'2 threads', or what a Keel too old to report them gives."""
    return "threads not reported" if count is None else f"{count} thread{'' if count == 1 else 's'}"


def span(values):
    """'1.09–1.14×' (or '1.11×' for one value, '-' for none): the range of per-config medians in a table row."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.2f}×" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}×"


def table_row(results):
    """The row of docs/benchmarks.md's per-CPU table ("Training step against PyTorch") this run measured: the CPU
    and its instruction sets, the date, Keel's threads, the fp32 library, each ratio as the range of the configs'
    medians, and the bf16 engine."""
    summaries = [c["summary"] for c in results["configs"].values() if c.get("summary")]
    hosts = [s["keel_host"] for s in summaries if s.get("keel_host")]
    if not hosts:
        return None
    host = hosts[0]

    def medians(side, key):
        return [s[side][key]["median"] for s in summaries if key in s.get(side, {})]

    bf16 = [s["keel_over_keel_bf16"]["median"] for s in summaries if "keel_over_keel_bf16" in s]
    # The library as it names itself (build and kernels): the part of `blas` before how it was chosen, which says
    # "saved to" in a run's first process and "cached in" after.
    libraries = sorted({h["blas"].split("; ")[0] for h in hosts if h.get("blas")})
    cpu = f"{host['cpu']} ({', '.join(host['instruction_sets']) or 'no AVX2'}), {results['meta']['started'][:10]}, " \
          f"{threads_text(host['threads'])}"
    return (f"| {cpu} | {'; '.join(libraries) or '-'} | {span(medians('eager', 'torch_over_keel'))} | "
            f"{span(medians('compile', 'torch_over_keel'))} | {host.get('bf16_engine') or '-'} | {span(bf16)} |")


def summarize(name, rounds, args, warnings):
    bench = CONFIGS[name]
    c = bench.model
    flops = model_flops_per_step(bench)
    tokens = bench.tokens_per_step
    print(f"\n== {name}: {c.arch}, {c.n_layer} layers, {c.n_head} heads, d_model {c.d_model}, "
          f"{parameter_count(c) / 1e6:.2f} M parameters; B {bench.batch} × T {bench.seq} = {tokens} tokens/step; "
          f"{flops / 1e9:.1f} GFLOP/step; {len(rounds)} rounds ==")
    sides = [(key, SIDE_LABELS[key]) for key in SIDE_LABELS if any(key in r for r in rounds)]
    keel_sides = [key for key, _ in sides if key.startswith("keel")]
    sgemm = [r[k]["sgemm_gflops"] for r in rounds for k in ("keel", "keel-bf16") if "median_ms" in r.get(k, {})
             and r[k].get("sgemm_gflops")]
    sgemm = statistics.median(sgemm) if sgemm else None
    header = f"  {'':14s} {'ms/step':>9s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of sgemm':>8s} {'peak RSS':>9s} " \
             f"{'other CPU':>9s}   " + "   ".join(f"torch/{k} ms (min / median / max)" for k in keel_sides)
    print(header)
    summary = {}
    for key, label in sides:
        records = [r[key] for r in rounds if key in r]
        ok = [x for x in records if measured(x)]
        if not records:
            continue
        if not ok:
            print(f"  {label:14s} failed: {records[-1].get('error', '?')[:300]}")
            summary[key] = {"error": records[-1].get("error")}
            continue
        ms = statistics.median(x["median_ms"] for x in ok)
        gflops = flops / (ms / 1e3) / 1e9
        rss = statistics.median(x["maxrss_mb"] for x in ok)
        foreign = max(x["foreign_cpu"] for x in ok)
        ratios = {}
        if not key.startswith("keel"):
            for keel in keel_sides:
                ratios[keel] = [r[key]["median_ms"] / r[keel]["median_ms"] for r in rounds
                                if measured(r.get(key, {})) and measured(r.get(keel, {}))]
        of_sgemm = f"{100 * gflops / sgemm:7.1f}%" if sgemm else f"{'-':>8s}"
        print(f"  {label:14s} {ms:9.1f} {tokens / (ms / 1e3):9.0f} {gflops:8.1f} {of_sgemm} {rss:7.0f} MB "
              f"{100 * foreign:8.1f}%   " + "   ".join(fmt_ratio(v) for v in ratios.values()))
        summary[key] = {"median_ms": ms, "tokens_per_s": tokens / (ms / 1e3), "model_gflops": gflops,
                        "peak_rss_mb": rss, "max_foreign_cpu": foreign, "rounds_ok": len(ok)}
        for keel, values in ratios.items():
            if values:
                summary[key][f"torch_over_{keel}"] = {"min": min(values), "median": statistics.median(values),
                                                     "max": max(values), "per_round": values}
        if foreign > args.max_foreign:
            warnings.append(f"{name} {label}: other processes used up to {100 * foreign:.0f}% of the CPU "
                            f"during a measurement; its times are not trustworthy")
    if sgemm:
        mfus = {k: summary[k]["model_gflops"] / sgemm for k in keel_sides if summary.get(k, {}).get("model_gflops")}
        print(f"  Keel sgemm: {sgemm:.1f} GFLOP/s" + "".join(f"; {k} MFU (model GFLOP/s / sgemm) {100 * v:.1f}%"
                                                             for k, v in mfus.items()))
        summary["sgemm_gflops"] = sgemm
        summary["keel_mfu"] = mfus.get("keel")
        if "keel-bf16" in mfus:
            summary["keel_bf16_mfu"] = mfus["keel-bf16"]
    bf16_ceiling = [r["keel-bf16"]["bf16_gemm_gflops"] for r in rounds
                    if r.get("keel-bf16", {}).get("bf16_gemm_gflops")]
    if bf16_ceiling:
        ceiling = statistics.median(bf16_ceiling)
        bf16 = summary.get("keel-bf16", {}).get("model_gflops")
        print(f"  Keel bf16 product ceiling: {ceiling:.1f} GFLOP/s"
              + (f"; keel-bf16 at {100 * bf16 / ceiling:.1f}% of it" if bf16 else ""))
        summary["bf16_gemm_gflops"] = ceiling
    mm = [r["eager"]["torch_mm_gflops"] for r in rounds if r.get("eager", {}).get("torch_mm_gflops")]
    if mm:
        shape = next(r["eager"]["torch_mm_shape"] for r in rounds if r.get("eager", {}).get("torch_mm_shape"))
        print(f"  PyTorch (MKL) sgemm [{shape[0]}×{shape[1]}]·[{shape[1]}×{shape[2]}]: {statistics.median(mm):.1f} GFLOP/s")
        summary["torch_mm_gflops"] = statistics.median(mm)
    host = keel_host(rounds)
    if host:
        print(f"  Keel ran on {host['cpu']} ({', '.join(host['instruction_sets']) or 'no AVX2'}), "
              f"{threads_text(host['threads'])}; fp32 products: {host['blas']}"
              + (f"; bf16 engine: {host['bf16_engine']}" if host.get("bf16_engine") else ""))
        summary["keel_host"] = host
    bf16_over_fp32 = [r["keel"]["median_ms"] / r["keel-bf16"]["median_ms"] for r in rounds
                      if all(measured(r.get(k, {})) for k in ("keel", "keel-bf16"))]
    if bf16_over_fp32:
        print(f"  Keel fp32 ms / Keel bf16 ms (min / median / max): {fmt_ratio(bf16_over_fp32)}")
        summary["keel_over_keel_bf16"] = {"min": min(bf16_over_fp32), "median": statistics.median(bf16_over_fp32),
                                          "max": max(bf16_over_fp32), "per_round": bf16_over_fp32}
    keel_reported = [r["keel"]["peak_rss_mb"] for r in rounds if "peak_rss_mb" in r.get("keel", {})]
    if keel_reported:
        print(f"  Keel's own peak_rss_mb: {statistics.median(keel_reported):.0f} MB (table: wait4 ru_maxrss)")
    firsts = [r["compile"]["first_step_s"] for r in rounds if r.get("compile", {}).get("first_step_s")]
    if firsts:
        eager_ms = summary.get("eager", {}).get("median_ms")
        later = f", later rounds (warm Inductor cache) median {statistics.median(firsts[1:]):.1f} s" \
            if len(firsts) > 1 else ""
        print(f"  torch.compile first step (compilation + one step): round 1 (cold cache) {firsts[0]:.1f} s{later}")
        # Compilation alone: the first step less that process's timed step.
        costs = [r["compile"]["first_step_s"] - r["compile"]["median_ms"] / 1e3 for r in rounds
                 if r.get("compile", {}).get("first_step_s") and "median_ms" in r["compile"]]
        if costs:
            print(f"  torch.compile compilation ≈ first step − timed step: {costs[0]:.1f} s cold"
                  + (f", {statistics.median(costs[1:]):.1f} s from the cache" if len(costs) > 1 else ""))
        summary["compile_first_step_s"] = firsts
        summary["compile_seconds"] = costs
    steady = [r["eager"]["steady_peak_rss_mb"] for r in rounds if r.get("eager", {}).get("steady_peak_rss_mb")]
    if steady:
        base = statistics.median(r["eager"]["rss_after_import_mb"] for r in rounds if "rss_after_import_mb" in
                                 r.get("eager", {}))
        print(f"  torch process after `import torch`: {base:.0f} MB RSS (counted in its peak)")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keel", default=".build/release/keel", help="keel binary (or keel_stub.py)")
    parser.add_argument("--skip-keel", action="store_true", help="PyTorch only (no ratios)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--keel-precision", default="fp32", choices=["fp32", "bf16", "both"],
                        help="Keel's matrix operands (keel bench --precision); both: a Keel process of each per round")
    parser.add_argument("--torch-bf16", action="store_true",
                        help="also run PyTorch eager under torch.autocast(bfloat16), the peer of Keel's bf16")
    parser.add_argument("--optimizer", default="fused", choices=["fused", "foreach", "single"],
                        help="PyTorch AdamW implementation (fused: the fastest on CPU, see README)")
    parser.add_argument("--torch-malloc", default="auto", choices=["auto", "jemalloc", "tcmalloc", "glibc"],
                        help="allocator preloaded into the PyTorch process (auto: jemalloc, else tcmalloc, else glibc)")
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("KEEL_THREADS") or len(os.sched_getaffinity(0))),
                        help="threads of both sides: PyTorch's, and Keel's through KEEL_THREADS (default: KEEL_THREADS "
                             "when set, else the cores this process may run on)")
    parser.add_argument("--compile-timeout", type=float, default=600,
                        help="seconds allowed for torch.compile's first step; beyond it compile is dropped")
    parser.add_argument("--process-timeout", type=float, default=3600, help="seconds allowed for one process")
    parser.add_argument("--max-foreign", type=float, default=0.05,
                        help="warn when other processes used more than this share of the CPU")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="before each process, wait up to S seconds for the machine to be idle")
    parser.add_argument("--retries", type=int, default=0,
                        help="measure a process again (up to N times) when other processes used the CPU meanwhile")
    parser.add_argument("--python", default=sys.executable, help="Python with torch for the PyTorch side")
    parser.add_argument("--json", metavar="OUT", help="write every raw number to this JSON file")
    args = parser.parse_args()

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not args.skip_keel and not os.path.exists(args.keel):
        parser.error(f"no Keel binary at {args.keel} (build it, pass --keel, or --skip-keel)")

    torch_env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    keel_env = dict(os.environ, KEEL_THREADS=str(args.threads))
    malloc, malloc_path = allocator_library(args.torch_malloc)
    if malloc_path:
        torch_env["LD_PRELOAD"] = " ".join(x for x in [malloc_path, os.environ.get("LD_PRELOAD", "")] if x)
    if malloc == "jemalloc" and "MALLOC_CONF" not in os.environ:
        # Never hand freed pages back: with jemalloc's default decay the page faults of glibc return.
        torch_env["MALLOC_CONF"] = JEMALLOC_CONF
    cache = None
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A fresh Inductor cache per config: round 1 compiles cold, later rounds hit the cache.
        cache = tempfile.TemporaryDirectory(prefix="keel-peer-inductor-")
    torch_cmd = [args.python, os.path.join(HERE, "torch_bench.py"), "--steps", str(args.steps),
                 "--warmup", str(args.warmup), "--optimizer", args.optimizer, "--threads", str(args.threads),
                 "--json"]
    keel_cmd = [args.keel] if os.access(args.keel, os.X_OK) or args.skip_keel else [sys.executable, args.keel]

    info = machine_info()
    if not args.skip_keel:
        with open(args.keel, "rb") as f:
            info["keel_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
        info["keel_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(args.keel)))
    print(f"peer benchmark: {info['cpu']}, {info['cores']} cores; git {info['git_rev']}"
          f"{' (dirty)' if info['git_dirty'] else ''}"
          f"{'; keel ' + info['keel_sha256'] + ' built ' + info['keel_mtime'] if 'keel_sha256' in info else ''}; configs {', '.join(names)}; {args.rounds} rounds of "
          f"{args.warmup} warm-up + {args.steps} measured steps; PyTorch AdamW {args.optimizer}, "
          f"{args.threads} threads, malloc {malloc}" + ("" if not args.skip_compile else "; compile skipped"))
    if malloc == "glibc" and args.torch_malloc == "auto":
        print("  note: PyTorch runs on glibc malloc, whose page faults cost it ~20% on this benchmark; "
              "apt-get install libjemalloc2 for its best figures (README)")
    results = {"meta": dict(info, args=vars(args), torch_malloc=malloc, torch_ld_preload=malloc_path,
                            torch_malloc_conf=torch_env.get("MALLOC_CONF"),
                            started=time.strftime("%Y-%m-%dT%H:%M:%S%z")), "configs": {}}
    warnings = []
    for name in names:
        rounds = []
        if cache:
            torch_env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache.name, name)
        dropped = {}  # side -> reason: a side that fails once is not run again for this config
        keel_sides = {"fp32": ["keel"], "bf16": ["keel-bf16"], "both": ["keel", "keel-bf16"]}[args.keel_precision]
        sides = ([] if args.skip_keel else keel_sides) + ["eager"] + ([] if args.skip_compile else ["compile"]) \
            + (["eager-bf16"] if args.torch_bf16 else [])
        for r in range(args.rounds):
            entry = {}
            for side in sides:
                if side in dropped:
                    continue
                if side.startswith("keel"):
                    cmd, env = keel_cmd + ["bench", "--preset", name, "--steps", str(args.steps),
                                           "--warmup", str(args.warmup), "--json"] \
                        + (["--precision", "bf16"] if side == "keel-bf16" else []), keel_env
                else:
                    cmd, env = torch_cmd + ["--preset", name] + (["--compile"] if side == "compile" else []) \
                        + (["--autocast-bf16"] if side == "eager-bf16" else []), torch_env
                for attempt in range(args.retries + 1):
                    if args.wait_idle > 0:
                        wait_for_idle(args.wait_idle, args.max_foreign)
                    record = measure(side, cmd, env, args, name)
                    record["attempt"] = attempt
                    if "error" in record or record.get("foreign_cpu", 0) <= args.max_foreign:
                        break
                    if attempt < args.retries:
                        print(f"  {name} round {r + 1}: {side} shared the CPU with other processes "
                              f"({100 * record['foreign_cpu']:.0f}%), measuring again", file=sys.stderr)
                entry[side] = record
                if "error" in record:
                    dropped[side] = record["error"]
                    print(f"  {name} round {r + 1}: {side} failed, dropped for this config: "
                          f"{record['error'][:1000]}", file=sys.stderr)
                if side.startswith("keel") and record.get("stub"):
                    msg = "Keel figures come from keel_stub.py (made up), not from Keel"
                    if msg not in warnings:
                        warnings.append(msg)
                if side.startswith("keel") and "median_ms" in record:
                    bench = CONFIGS[name]
                    expected = (bench.tokens_per_step, model_flops_per_step(bench))
                    got = (record.get("tokens_per_step"), record.get("model_flops_per_step"))
                    if got != expected:
                        msg = (f"{name}: keel reports tokens/model FLOPs per step {got}, peer expects {expected}; "
                               "the two sides do not run the same work (or count it differently)")
                        if msg not in warnings:
                            warnings.append(msg)
            rounds.append(entry)
            parts = []
            for side in sides:
                x = entry.get(side, {})
                if measured(x):
                    part = f"{side} {x['median_ms']:.0f} ms"
                    for keel in (k for k in sides if k.startswith("keel")):
                        if not side.startswith("keel") and "median_ms" in entry.get(keel, {}):
                            part += f" ({x['median_ms'] / entry[keel]['median_ms']:.2f}× {keel})"
                    if side == "compile" and x.get("first_step_s"):
                        part += f" [first step {x['first_step_s']:.1f} s]"
                    parts.append(part)
            print(f"  {name} round {r + 1}/{args.rounds}: " + ", ".join(parts or ["nothing measured"]), flush=True)
        results["configs"][name] = {"rounds": rounds, "dropped": dropped}
        results["configs"][name]["summary"] = summarize(name, rounds, args, warnings)
        if args.json:  # after every config, so an interrupted run keeps what it measured
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    row = table_row(results)
    if row:
        print("\nper-CPU table row (docs/benchmarks.md, \"Training step against PyTorch\"; ratios: range of the configs' "
              "medians, PyTorch ms / Keel ms):")
        print("| CPU kind | fp32 library chosen | Keel fp32 / eager | Keel fp32 / compile | bf16 engine | Keel bf16 / Keel fp32 |")
        print(row)
        results["table_row"] = row
    for w in warnings:
        print(f"WARNING: {w}")
    results["warnings"] = warnings
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"raw numbers: {args.json}")
    if cache:
        cache.cleanup()


if __name__ == "__main__":
    main()
