#!/usr/bin/env python3
"""Main-content extraction, Keel against trafilatura, on trafilatura's own evaluation set.

Usage: scripts/bench/web_extract.py EVAL KEEL
  EVAL: the unpacked evaluation set (a directory holding evaldata.json, eval/ and cache/: trafilatura's
        tests/evaldata.json, tests/eval/ and tests/cache/) or its .tar.zst.
  KEEL: the keel binary (build it with swift build -c release).

Both read the same raw bytes of the 990 pages. Keel extracts all pages in one process (`keel data extract`),
trafilatura 2.3.1 (pip install trafilatura==2.3.1) in a loop of trafilatura.extract with its defaults, both on one
core. Scoring is trafilatura's (docs/evaluation.rst): over all pages, a `with` snippet found in the output is a true
positive, one missing a false negative; a `without` snippet found is a false positive, one absent a true negative.
Prints precision, recall, F1, accuracy and pages/s for each; with --misses, both extractors' missing and unwanted
snippets per page kind (the domain's top-level suffix, a rough stand-in for language and layout), then Keel's page by
page; with --keel-only, Keel's scores alone.
"""
import json, os, subprocess, sys, tarfile, tempfile, time

def unpack(path):
    if os.path.isdir(path):
        return path
    target = tempfile.mkdtemp(prefix="keel-web-eval-")
    subprocess.run(f"zstd -dc '{path}' | tar -x -C '{target}'", shell=True, check=True)
    return os.path.join(target, "trafilatura-eval")

def score(outputs, data):
    tp = fn = fp = tn = 0
    for url, entry in data.items():
        text = outputs.get(url) or ""
        for snippet in entry.get("with", []):
            if snippet in text: tp += 1
            else: fn += 1
        for snippet in entry.get("without", []):
            if snippet in text: fp += 1
            else: tn += 1
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    return precision, recall, f1, (tp + tn) / max(1, tp + tn + fp + fn)

def main():
    root, keel = unpack(sys.argv[1]), sys.argv[2]
    data = json.load(open(os.path.join(root, "evaldata.json")))
    paths = {}
    for url, entry in data.items():
        for folder in ("eval", "cache"):
            candidate = os.path.join(root, folder, entry["file"])
            if os.path.exists(candidate):
                paths[url] = candidate
                break
    missing = len(data) - len(paths)
    out = tempfile.mktemp(suffix=".jsonl")
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", "0", keel, "data", "extract", *paths.values(), "--out", out], check=True,
                   stderr=subprocess.DEVNULL)
    keel_seconds = time.perf_counter() - started
    by_source = {json.loads(line)["source"]: json.loads(line) for line in open(out)}
    # The text only, as trafilatura.extract returns it (no title).
    keel_outputs = {url: by_source.get(path, {}).get("text", "") for url, path in paths.items()}

    if "--keel-only" in sys.argv:
        # Keel's scores alone, for trying a change quickly (the speed ratio needs both).
        p, r, f, a = score(keel_outputs, data)
        print(f"keel: precision {p:.3f} recall {r:.3f} F1 {f:.3f} accuracy {a:.3f}, {len(paths) / keel_seconds:.1f} pages/s")
        return

    import trafilatura
    os.sched_setaffinity(0, {0})
    raw = {url: open(path, "rb").read() for url, path in paths.items()}
    started = time.perf_counter()
    trafilatura_outputs = {url: trafilatura.extract(content) or "" for url, content in raw.items()}
    trafilatura_seconds = time.perf_counter() - started

    print(f"{len(paths)} pages ({missing} listed without a file), one core")
    print(f"{'extractor':<22} {'precision':>9} {'recall':>7} {'F1':>6} {'accuracy':>8} {'pages/s':>8}")
    for name, outputs, seconds in (("keel", keel_outputs, keel_seconds),
                                   (f"trafilatura {trafilatura.__version__}", trafilatura_outputs, trafilatura_seconds)):
        p, r, f, a = score(outputs, data)
        print(f"{name:<22} {p:>9.3f} {r:>7.3f} {f:>6.3f} {a:>8.3f} {len(paths) / seconds:>8.1f}")
    print(f"keel pages/s ÷ trafilatura's: {trafilatura_seconds / keel_seconds:.1f}×")
    if "--misses" in sys.argv:
        # Misses by page kind: the top-level domain, a rough stand-in for language and layout.
        kinds = {}
        for url, entry in data.items():
            name = "." + url.split("/")[2].rsplit(".", 1)[-1].split(":")[0] if "://" in url else "(no URL)"
            kind = kinds.setdefault(name, [0, 0, 0, 0, 0])
            kind[0] += 1
            for column, outputs in ((1, keel_outputs), (3, trafilatura_outputs)):
                text = outputs.get(url) or ""
                kind[column] += sum(s not in text for s in entry.get("with", []))
                kind[column + 1] += sum(s in text for s in entry.get("without", []))
        print(f"{'kind':<8} {'pages':>5} {'keel missing':>12} {'keel unwanted':>13} {'traf. missing':>13} {'traf. unwanted':>14}")
        for name, (pages, *counts) in sorted(kinds.items(), key=lambda item: -item[1][0]):
            print(f"{name:<8} {pages:>5} {counts[0]:>12} {counts[1]:>13} {counts[2]:>13} {counts[3]:>14}")
        for url, entry in data.items():
            text = keel_outputs.get(url, "")
            lost = [s for s in entry.get("with", []) if s not in text]
            kept = [s for s in entry.get("without", []) if s in text]
            if lost or kept:
                print(json.dumps({"url": url, "missing": lost, "unwanted": kept}, ensure_ascii=False))

main()
