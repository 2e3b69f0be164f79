"""Keel's language identification against py3langid's (the same model) and against the languages pages declare.

For every HTML page under DIR that declares its language (`<html lang="de-DE">`, or a content-language
<meta>), extracts the main text with `keel data extract`, identifies its language with `keel data filter
--rules language` (every language kept) and with py3langid 0.4.0 (norm_probs=True), and prints: how often
Keel's language equals py3langid's, the largest probability difference, and each one's accuracy against the
declared language (a page's declaration is sometimes wrong, so neither reaches 100%), per language.

    .venv/bin/python scripts/bench/language_id.py .build/release/keel DIR [--model data/langid/model.npz.xz]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

DECLARED = [re.compile(rb"<html[^>]*\slang\s*=\s*[\"']?([A-Za-z]{2,3})", re.I),
            re.compile(rb"<meta[^>]*http-equiv\s*=\s*[\"']?content-language[\"']?[^>]*content\s*=\s*[\"']?([A-Za-z]{2,3})", re.I)]


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("keel")
    parser.add_argument("pages")
    parser.add_argument("--model", default="data/langid/model.npz.xz")
    args = parser.parse_args()

    declared = {}
    for root, _, names in os.walk(args.pages):
        for name in names:
            if name.endswith((".html", ".htm")):
                path = os.path.join(root, name)
                head = open(path, "rb").read(20000)
                for pattern in DECLARED:
                    match = pattern.search(head)
                    if match:
                        declared[path] = match.group(1).decode().lower()
                        break

    with tempfile.TemporaryDirectory() as work:
        pages = os.path.join(work, "pages")
        os.mkdir(pages)
        for index, path in enumerate(sorted(declared)):
            os.symlink(os.path.abspath(path), os.path.join(pages, "%04d_%s" % (index, os.path.basename(path))))
        extracted = os.path.join(work, "extracted.jsonl")
        subprocess.run([args.keel, "data", "extract", pages, "--out", extracted], check=True, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        subprocess.run([args.keel, "data", "filter", extracted, "--out", os.path.join(work, "kept.jsonl"), "--rules", "language",
                        "--set", "language.languages=all", "--set", "language.language_threshold=0",
                        "--set", "language.model=" + args.model], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, KEEL_THREADS="1"))
        keel_seconds = time.perf_counter() - started
        with open(os.path.join(work, "kept.jsonl")) as f:
            documents = [json.loads(line) for line in f]

    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    started = time.perf_counter()
    theirs = [identifier.classify(d["text"]) for d in documents]
    py3langid_seconds = time.perf_counter() - started

    by_name = {os.path.basename(p): lang for p, lang in declared.items()}
    labels = [by_name[os.path.basename(d["source"]).split("_", 1)[1]] for d in documents]
    same = sum(d["language"] == t[0] for d, t in zip(documents, theirs))
    largest = max(abs(d["language_score"] - t[1]) for d, t in zip(documents, theirs))
    keel_right = sum(d["language"] == label for d, label in zip(documents, labels))
    their_right = sum(t[0] == label for t, label in zip(theirs, labels))
    count = len(documents)
    print(f"{count} pages that declare their language; CPU: {cpu_model()}; one thread each")
    print(f"Keel = py3langid: {same}/{count} ({100 * same / count:.2f}%); largest probability difference {largest:.4f}")
    print(f"accuracy against the declared language: Keel {keel_right}/{count} ({100 * keel_right / count:.1f}%), "
          f"py3langid {their_right}/{count} ({100 * their_right / count:.1f}%)")
    print(f"time: Keel {keel_seconds:.2f} s (process start and model load included), py3langid {py3langid_seconds:.2f} s")
    print()
    print("| declared | pages | Keel right | py3langid right |")
    print("| --- | ---: | ---: | ---: |")
    per = collections.defaultdict(lambda: [0, 0, 0])
    for d, t, label in zip(documents, theirs, labels):
        per[label][0] += 1
        per[label][1] += d["language"] == label
        per[label][2] += t[0] == label
    for label, (pages_, keel_, theirs_) in sorted(per.items(), key=lambda item: -item[1][0]):
        print(f"| {label} | {pages_} | {keel_} | {theirs_} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
