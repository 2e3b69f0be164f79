"""Keel's quality rules against datatrove 0.10's, document by document.

Runs `keel data filter --decisions --words` and datatrove's GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter (each judging every document alone, default thresholds) on the same
JSONL documents, and prints per rule set: documents on which Keel and datatrove decide the same (keep or
remove), the same reason, and the documents whose spaCy word lists equal Keel's. Also times both.

    .venv/bin/python scripts/bench/filters_vs_datatrove.py .build/release/keel DOCS.jsonl [MORE.jsonl ...]
        [--html DIR]   also judge trafilatura's extraction of the HTML pages under DIR
        [--diffs N]    print up to N disagreeing documents per rule set

Needs datatrove==0.10.0 and spacy (its English tokenizer is datatrove's word splitter) in the environment;
trafilatura for --html.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.text import split_into_words

RULES = {
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4_quality": C4QualityFilter,
    "fineweb_quality": FineWebQualityFilter,
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def trafilatura_documents(directory):
    import trafilatura

    documents = []
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            if not name.endswith((".html", ".htm")):
                continue
            with open(os.path.join(root, name), "rb") as f:
                html = f.read()
            text = trafilatura.extract(html, include_comments=False)
            if text:
                documents.append({"source": "trafilatura:" + name, "text": text})
    return documents


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("keel")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--html")
    parser.add_argument("--diffs", type=int, default=0)
    args = parser.parse_args()

    documents = []
    for path in args.inputs:
        with open(path, encoding="utf-8") as f:
            documents += [json.loads(line) for line in f if line.strip()]
    if args.html:
        documents += trafilatura_documents(args.html)

    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "corpus.jsonl")
        with open(corpus, "w", encoding="utf-8") as f:
            for document in documents:
                f.write(json.dumps({"text": document["text"]}, ensure_ascii=False) + "\n")
        decisions_path, words_path = os.path.join(work, "decisions.tsv"), os.path.join(work, "words.jsonl")
        command = [args.keel, "data", "filter", corpus, "--out", os.path.join(work, "kept.jsonl"), "--rules", ",".join(RULES)]
        one_thread = dict(os.environ, KEEL_THREADS="1")
        started = time.perf_counter()
        subprocess.run(command + ["--decisions", decisions_path], check=True, stdout=subprocess.DEVNULL, env=one_thread)
        keel_seconds = time.perf_counter() - started
        subprocess.run(command + ["--words", words_path], check=True, stdout=subprocess.DEVNULL, env=one_thread)
        keel = {}
        with open(decisions_path, encoding="utf-8") as f:
            for line in f:
                _, number, rule, reason = line.rstrip("\n").rsplit("\t", 3)
                keel[(int(number) - 1, rule)] = None if reason == "keep" else reason
        with open(words_path, encoding="utf-8") as f:
            keel_words = [json.loads(line) for line in f]

    filters = {name: cls() for name, cls in RULES.items()}
    theirs = {}
    started = time.perf_counter()
    for index, document in enumerate(documents):
        for name, rule in filters.items():
            result = rule.filter(Document(text=document["text"], id=str(index)))
            if isinstance(result, tuple):
                theirs[(index, name)] = result[1]
            else:
                theirs[(index, name)] = None if result else "removed"
    datatrove_seconds = time.perf_counter() - started
    same_words = sum(split_into_words(d["text"]) == keel_words[i] for i, d in enumerate(documents))

    count = len(documents)
    print(f"{count} documents; CPU: {cpu_model()}; one thread each")
    print(f"words: {same_words}/{count} documents ({100 * same_words / count:.2f}%) split exactly as spaCy splits them")
    print()
    print("| rule set | same decision | same reason | removed by datatrove | removed by Keel |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in RULES:
        decision = sum((keel[(i, name)] is None) == (theirs[(i, name)] is None) for i in range(count))
        reason = sum(keel[(i, name)] == theirs[(i, name)] for i in range(count))
        removed_theirs = sum(theirs[(i, name)] is not None for i in range(count))
        removed_keel = sum(keel[(i, name)] is not None for i in range(count))
        print(f"| {name} | {decision}/{count} ({100 * decision / count:.2f}%) | {reason}/{count} ({100 * reason / count:.2f}%)"
              f" | {removed_theirs} | {removed_keel} |")
    print()
    print(f"time, each rule set judging every document alone: Keel {keel_seconds:.2f} s (process start and JSON "
          f"included), datatrove {datatrove_seconds:.2f} s: Keel {datatrove_seconds / keel_seconds:.1f}x")

    if args.diffs:
        for name in RULES:
            shown = 0
            for i in range(count):
                if keel[(i, name)] != theirs[(i, name)] and shown < args.diffs:
                    shown += 1
                    text = documents[i]["text"]
                    words = split_into_words(text)
                    print(f"\n== {name} document {i + 1}: Keel {keel[(i, name)]}, datatrove {theirs[(i, name)]}; "
                          f"words Keel {len(keel_words[i])} spaCy {len(words)}")
                    mismatch = next((k for k, (a, b) in enumerate(zip(keel_words[i], words)) if a != b), None)
                    if mismatch is not None:
                        print("   first word difference:", keel_words[i][max(0, mismatch - 3):mismatch + 4], "vs",
                              words[max(0, mismatch - 3):mismatch + 4])
    return 0


if __name__ == "__main__":
    sys.exit(main())
