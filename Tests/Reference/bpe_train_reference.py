#!/usr/bin/env python3
"""Plain reference for Keel's byte-level BPE training (Sources/KeelData/BPETrainer.swift).

It recounts every pair in every piece before each merge: slow, but with nothing incremental to get wrong.

Usage:
    python3 Tests/Reference/bpe_train_reference.py < IN.json > OUT.json
    python3 Tests/Reference/bpe_train_reference.py --self-test

IN.json:  {"corpora": [{"merge_count": N, "pieces": [["<hex bytes>", count], ...]}, ...]}
OUT.json: {"merges": [[[left, right], ...], ...]}   one list of merges per corpus, in order

Rules (the same as BPETrainer's documentation):
  * token b (0..255) is byte b; merge i creates token 256 + i spelling bytes(left) + bytes(right);
  * a pair scores sum(count * occurrences) over pieces, where occurrences is how many times merging the
    pair left to right joins it in the piece, so (a, a) occurs once in "aaa" ("aa a") and twice in "aaaa";
  * the highest score wins; ties go to the smallest left id, then the smallest right id;
  * a pair whose bytes equal an existing token's bytes is never merged (the next best is taken);
  * training stops early when no mergeable pair scores at least 2.
Only the standard library is used.
"""

import json
import random
import sys


def apply_merge(symbols, pair, token):
    """`symbols` with each occurrence of `pair` replaced by `token`, scanning left to right."""
    merged = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(token)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def occurrences(symbols):
    """{pair: how many times apply_merge(symbols, pair, _) would join it}.

    Every adjacent position counts, except that within a run x x x ... the pair (x, x) is joined at
    positions 0-1, 2-3, ..., so a position right after a joined (x, x) is not counted.
    """
    found = {}
    joined_repeat_before = False
    for i in range(len(symbols) - 1):
        pair = (symbols[i], symbols[i + 1])
        if pair[0] == pair[1] and joined_repeat_before:
            joined_repeat_before = False
            continue
        joined_repeat_before = pair[0] == pair[1]
        found[pair] = found.get(pair, 0) + 1
    return found


def train(pieces, merge_count):
    """The merges learned from [(bytes, count)], as a list of (left, right)."""
    words = [(list(data), count) for data, count in pieces if count > 0]
    token_bytes = [bytes([b]) for b in range(256)]
    known = set(token_bytes)
    merges = []
    while len(merges) < merge_count:
        scores = {}
        for symbols, count in words:
            for pair, n in occurrences(symbols).items():
                scores[pair] = scores.get(pair, 0) + n * count
        candidates = [(score, pair) for pair, score in scores.items()
                      if score >= 2 and token_bytes[pair[0]] + token_bytes[pair[1]] not in known]
        if not candidates:
            break
        # Highest score, then smallest (left, right).
        _, best = min(candidates, key=lambda c: (-c[0], c[1]))
        token = 256 + len(merges)
        merges.append(best)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
        known.add(token_bytes[-1])
        words = [(apply_merge(symbols, best, token), count) for symbols, count in words]
    return merges


def self_test():
    # occurrences agrees with its definition: the tokens apply_merge saves.
    rng = random.Random(0)
    for _ in range(2000):
        symbols = [rng.randrange(3) for _ in range(rng.randrange(12))]
        for pair, n in occurrences(symbols).items():
            assert n == len(symbols) - len(apply_merge(symbols, pair, 99)), (symbols, pair)
    assert occurrences(list(b"aaa")) == {(97, 97): 1}
    assert occurrences(list(b"aaaa")) == {(97, 97): 2}
    assert apply_merge(list(b"aaa"), (97, 97), 256) == [256, 97]

    a, b, c = 97, 98, 99
    # "ab" x3 and "bc" x3 tie: (a, b) has the smaller left id.
    assert train([(b"ab", 3), (b"bc", 3)], 5) == [(a, b), (b, c)]
    # "ab" x2, "xab" x1: (a, b) scores 3 and wins; then ("x", ab) scores 1 and training stops.
    assert train([(b"ab", 2), (b"xab", 1)], 5) == [(a, b)]
    # "abc" learned as (ab, c) in one piece; later (a, bc) from "abc"'s other split would duplicate it.
    merges = train([(b"abab", 5), (b"abc", 4), (b"xbc", 3), (b"bcbc", 2), (b"abc", 1)], 10)
    spelled = [bytes([x]) for x in range(256)]
    for left, right in merges:
        spelled.append(spelled[left] + spelled[right])
    assert len(set(spelled)) == len(spelled), merges
    print("self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    request = json.load(sys.stdin)
    results = []
    for corpus in request["corpora"]:
        pieces = [(bytes.fromhex(data), count) for data, count in corpus["pieces"]]
        results.append([list(pair) for pair in train(pieces, corpus["merge_count"])])
    json.dump({"merges": results}, sys.stdout)


if __name__ == "__main__":
    main()
