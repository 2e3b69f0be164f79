#!/usr/bin/env python3
"""`keel data dedup` against datasketch and datatrove on the same real documents.

1. Builds a test corpus from real pages (JSONL with "text"): the pages, exact copies of some, near copies of others (a
   few words replaced, a sentence appended), and chains of near copies (A, A', A'' each edited from the previous).
2. Shingles: Keel's shingle hashes (`--shingles`) against datatrove's `MinhashDedupSignature.get_shingles`, document by
   document (the fraction whose shingle sets are equal; also whose sequences are).
3. Candidate pairs, exactly: Keel with `--hash-bits 32 --pairs` against datasketch's legacy MinHash
   (num_perm=112, hashfunc = XXH64 of the shingle's UTF-8, permutations = datatrove's RandomState(1) a, b) in a
   MinHashLSH(params=(14, 8)); and Keel's default 64-bit pairs against datatrove's own signatures bucketed in Python.
   Shingles come from datatrove (simplify_text, spaCy, 5-grams); documents without a shingle are left out, as datatrove
   leaves them out.
4. Throughput on one core (both pinned to CPU 0): datatrove's signature stage (get_shingles + get_signature, in
   process) against the whole `keel data dedup` run (reading, exact and MinHash keys, sorting, clustering, writing).

Usage (from the repository root):
    .venv/bin/python scripts/bench/dedup_vs_datasketch.py --keel .build/release/keel --pages pages.jsonl
where pages.jsonl comes from `keel data extract path/to/trafilatura-eval --out pages.jsonl`; or give
--eval-archive path/to/trafilatura-eval.tar.zst (trafilatura's tests/evaldata.json, eval/ and cache/) and the
script unpacks and extracts it itself.
"""
import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.utils.text import ngrams, simplify_text

def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def extract_pages(keel, archive, work):
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(work)], check=True)
    pages = work / "pages.jsonl"
    subprocess.run([keel, "data", "extract", str(work / "trafilatura-eval"), "--out", str(pages)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return pages


def edit(text, rng, replaced=3, append=True):
    """A near copy: a few words replaced, maybe a sentence appended (Jaccard of 5-gram sets stays high on long pages)."""
    words = text.split(" ")
    for _ in range(replaced):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["lorem", "ipsum", "dolor", "amet", "consectetur", "adipiscing"])
    out = " ".join(words)
    if append:
        out += " This page was last edited on a Tuesday."
    return out


def build_corpus(pages, path, seed=1):
    rng = random.Random(seed)
    docs = [json.loads(line) for line in open(pages, encoding="utf-8") if line.strip()]
    long_docs = [d for d in docs if len(d["text"].split()) >= 300]
    out = [dict(d) for d in docs]
    for d in rng.sample(docs, len(docs) // 20):  # exact copies
        out.append(dict(d, source=d.get("source", "") + "#copy"))
    for d in rng.sample(long_docs, len(long_docs) // 10):  # near copies
        out.append(dict(d, text=edit(d["text"], rng), source=d.get("source", "") + "#near"))
    for d in rng.sample(long_docs, min(5, len(long_docs))):  # chains A ~ A' ~ A''
        a1 = edit(d["text"], rng, replaced=6, append=False)
        a2 = edit(a1, rng, replaced=6, append=True)
        out.append(dict(d, text=a1, source=d.get("source", "") + "#chain1"))
        out.append(dict(d, text=a2, source=d.get("source", "") + "#chain2"))
    rng.shuffle(out)
    with open(path, "w", encoding="utf-8") as f:
        for d in out:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return [d["text"] for d in out]


def shingle_strings(sig, text):
    words = sig.word_tokenizer.word_tokenize(simplify_text(text, sig.config.norm_config))
    return [" ".join(x) for x in ngrams(words, sig.config.n_grams)]


def pairs_from_buckets(buckets):
    pairs = set()
    for members in buckets:
        members = sorted(members)
        pairs.update(itertools.combinations(members, 2))
    return pairs


def datasketch_pairs(shingles_per_doc, a, b):
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    for i, shingles in enumerate(shingles_per_doc):
        if not shingles:
            continue
        m = MinHash(num_perm=112, hashfunc=xxhash.xxh64_intdigest, permutations=(a, b), scheme="legacy")
        m.update_batch([s.encode("utf-8") for s in shingles])
        lsh.insert(i, m)
    buckets = []
    for table in lsh.hashtables:
        for key in table.keys():
            members = table.get(key)
            if len(members) > 1:
                buckets.append(members)
    return pairs_from_buckets(buckets)


def datatrove_pairs(sig, texts):
    buckets = {}
    for i, text in enumerate(texts):
        shingles = sig.get_shingles(text)
        if shingles.size == 0:
            continue
        for band, values in enumerate(sig.get_signature(shingles)):
            buckets.setdefault((band, tuple(values)), []).append(i)
    return pairs_from_buckets(m for m in buckets.values() if len(m) > 1)


def read_pairs(path):
    return {tuple(map(int, line.split("\t"))) for line in open(path) if line.strip()}


def pin(command):
    return ["taskset", "-c", "0"] + command


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keel", default=".build/release/keel")
    parser.add_argument("--pages", help="JSONL of real pages, as keel data extract writes them")
    parser.add_argument("--eval-archive", help="trafilatura-eval.tar.zst, to extract the pages from instead")
    parser.add_argument("--work", help="directory for the corpus and outputs (default: a temporary one)")
    parser.add_argument("--timing-repeats", type=int, default=3, help="best of N timed runs")
    args = parser.parse_args()
    if not args.pages and not args.eval_archive:
        parser.error("give --pages PAGES.jsonl or --eval-archive trafilatura-eval.tar.zst")
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.sched_setaffinity(0, {0})  # datatrove runs in this process: one core, the one Keel is pinned to
    work = Path(args.work or tempfile.mkdtemp(prefix="dedup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    keel = str(Path(args.keel).resolve())
    pages = Path(args.pages) if args.pages else extract_pages(keel, args.eval_archive, work)
    corpus = work / "corpus.jsonl"
    texts = build_corpus(pages, corpus)
    corpus_bytes = corpus.stat().st_size
    print(f"corpus: {len(texts)} documents, {corpus_bytes / 1e6:.1f} MB ({corpus})", file=sys.stderr)

    sig = MinhashDedupSignature(output_folder=str(work / "datatrove-sigs"))
    a, b = (x.reshape(-1) for x in sig.parameters)

    # Shingles.
    subprocess.run([keel, "data", "dedup", str(corpus), "--out", str(work / "out64.jsonl"), "--pairs",
                    str(work / "pairs64.tsv"), "--shingles", str(work / "shingles.jsonl")], check=True,
                   stdout=subprocess.DEVNULL)
    keel_shingles = [json.loads(line) for line in open(work / "shingles.jsonl")]
    same_set = same_sequence = 0
    first_difference = None
    for i, text in enumerate(texts):
        theirs = sig.get_shingles(text).reshape(-1).tolist()
        same_set += set(theirs) == set(keel_shingles[i])
        same_sequence += theirs == keel_shingles[i]
        if first_difference is None and set(theirs) != set(keel_shingles[i]):
            first_difference = i
    print(f"shingle sets equal to datatrove's: {same_set}/{len(texts)} documents "
          f"({100 * same_set / len(texts):.2f}%); sequences equal: {same_sequence}/{len(texts)}", file=sys.stderr)
    if first_difference is not None:
        print(f"  first differing document: {first_difference}", file=sys.stderr)

    # Candidate pairs: 32-bit Keel vs datasketch, 64-bit Keel vs datatrove's signatures.
    subprocess.run([keel, "data", "dedup", str(corpus), "--out", str(work / "out32.jsonl"), "--hash-bits", "32",
                    "--pairs", str(work / "pairs32.tsv")], check=True, stdout=subprocess.DEVNULL)
    shingles_per_doc = [shingle_strings(sig, t) for t in texts]
    ds_pairs = datasketch_pairs(shingles_per_doc, a, b)
    keel32 = read_pairs(work / "pairs32.tsv")
    print(f"candidate pairs, 32-bit: Keel {len(keel32)}, datasketch {len(ds_pairs)}, equal: {keel32 == ds_pairs} "
          f"(only Keel: {len(keel32 - ds_pairs)}, only datasketch: {len(ds_pairs - keel32)})", file=sys.stderr)
    dt_pairs = datatrove_pairs(sig, texts)
    keel64 = read_pairs(work / "pairs64.tsv")
    print(f"candidate pairs, 64-bit: Keel {len(keel64)}, datatrove signatures {len(dt_pairs)}, equal: {keel64 == dt_pairs} "
          f"(only Keel: {len(keel64 - dt_pairs)}, only datatrove: {len(dt_pairs - keel64)})", file=sys.stderr)

    # Throughput, one core each.
    best_dt = float("inf")
    for _ in range(args.timing_repeats):
        start = time.perf_counter()
        for text in texts:
            shingles = sig.get_shingles(text)
            if shingles.size:
                sig.get_signature(shingles)
        best_dt = min(best_dt, time.perf_counter() - start)
    best_keel = float("inf")
    report = ""
    for _ in range(args.timing_repeats):
        start = time.perf_counter()
        run = subprocess.run(pin([keel, "data", "dedup", str(corpus), "--out", str(work / "timed.jsonl")]), check=True,
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if elapsed < best_keel:
            best_keel, report = elapsed, run.stdout
    dt_rate, keel_rate = len(texts) / best_dt, len(texts) / best_keel
    print(report.strip(), file=sys.stderr)
    print(f"datatrove signature stage: {dt_rate:.0f} docs/s; keel data dedup (whole run, wall clock): "
          f"{keel_rate:.0f} docs/s = {keel_rate / dt_rate:.1f}x", file=sys.stderr)

    print("| CPU (one core) | documents | shingle sets = datatrove | candidate pairs = datasketch (32-bit) "
          "| pairs = datatrove (64-bit) | datatrove signatures docs/s | Keel dedup docs/s | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {cpu_model()} | {len(texts)} ({corpus_bytes / 1e6:.1f} MB) | {same_set}/{len(texts)} "
          f"| {'yes' if keel32 == ds_pairs else 'NO'} ({len(keel32)} pairs) "
          f"| {'yes' if keel64 == dt_pairs else 'NO'} ({len(keel64)} pairs) | {dt_rate:.0f} | {keel_rate:.0f} "
          f"| {keel_rate / dt_rate:.1f}× |")
    ok = same_set == len(texts) and keel32 == ds_pairs and keel64 == dt_pairs
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
