#!/usr/bin/env bash
# keel data dedup through the real binary: exact and near duplicates removed, the first of each cluster kept with its
# line unchanged, candidate pairs written, a gzip input read as the plain one, and bad input as one error naming the file and line, with no output file.
# Usage: Tests/CLI/dedup_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: dedup_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cli_common.sh"

# Six documents: 0 and 3 differ only in white space (exact), 4 is 1 with one word changed (near), 2 and 5 are new.
python3 - "$work/in.jsonl" <<'PY'
import json, sys
def words(lo, hi):
    return " ".join("k" + "".join(chr(97 + (i // d) % 26) for d in (1, 26, 676)) for i in range(lo, hi))
near = words(300, 400).split(" ")
near[50] = "changed"
docs = [
    {"id": "a", "text": words(0, 100), "url": "http://a/"},
    {"id": "b", "text": words(300, 400)},
    {"id": "c", "text": words(600, 700), "extra": [1, {"x": None}]},
    {"id": "a2", "text": "  " + words(0, 100).replace(" ", "\n ")},
    {"id": "b2", "text": " ".join(near)},
    {"id": "d", "text": "Too short to shingle."},
]
with open(sys.argv[1], "w") as f:
    for d in docs:
        f.write(json.dumps(d) + "\n")
PY

cp "$work/in.jsonl" "$work/in.jsonl.before"
expect_ok "dedup" "$keel" data dedup "$work/in.jsonl" --out "$work/kept.jsonl" --removed "$work/removed.jsonl" --pairs "$work/pairs.tsv"
grep -q "documents in: 6" "$work/out" && grep -q "exact duplicates removed: 1" "$work/out" \
    && grep -q "near-duplicate clusters: 1; near duplicates removed: 1" "$work/out" && grep -q "docs/s" "$work/out" \
    && pass "the report counts documents, exact and near duplicates, speed" || fail "the report: $(cat "$work/out")"
check "kept documents are the first of each cluster, lines unchanged" \
    '[l for l in open(sys.argv[1])] == [l for i, l in enumerate(open(sys.argv[2])) if i in (0, 1, 2, 5)]' \
    "$work/kept.jsonl" "$work/in.jsonl"
check "removed documents name the one kept in their place" \
    '[(r["id"], r["duplicate_of"]) for r in map(json.loads, open(sys.argv[1]))] == [("a2", 0), ("b2", 1)]' "$work/removed.jsonl"
check "candidate pairs: the exact pair and the near pair" 'open(sys.argv[1]).read() == "0\t3\n1\t4\n"' "$work/pairs.tsv"

expect_ok "dedup --exact-only" "$keel" data dedup "$work/in.jsonl" --out "$work/exact.jsonl" --exact-only
check "--exact-only keeps the near duplicate" '[json.loads(l)["id"] for l in open(sys.argv[1])] == ["a", "b", "c", "b2", "d"]' \
    "$work/exact.jsonl"
expect_ok "dedup --hash-bits 32 --memory-mb 1" "$keel" data dedup "$work/in.jsonl" --out "$work/k32.jsonl" --hash-bits 32 --memory-mb 1
cmp -s "$work/k32.jsonl" "$work/kept.jsonl" && pass "32-bit values find the same clusters here" || fail "32-bit values find the same clusters here"

gzip -c "$work/in.jsonl" >"$work/in.jsonl.gz"
expect_ok "dedup of a gzip input" "$keel" data dedup "$work/in.jsonl.gz" --out "$work/gz-kept.jsonl" --removed "$work/gz-removed.jsonl"
cmp -s "$work/gz-kept.jsonl" "$work/kept.jsonl" && cmp -s "$work/gz-removed.jsonl" "$work/removed.jsonl" \
    && pass "a gzip input gives the same kept and removed documents" || fail "a gzip input gives the same kept and removed documents"

expect_error "missing input" "cannot read $work/nope.jsonl: No such file or directory" "$keel" data dedup "$work/nope.jsonl" --out "$work/o1.jsonl"
{ head -1 "$work/in.jsonl"; echo '{"text": "unterminated'; } >"$work/bad.jsonl"
expect_error "a line that is not JSON" "$work/bad.jsonl: line 2, column 10: unterminated string" "$keel" data dedup "$work/in.jsonl" "$work/bad.jsonl" --out "$work/o2.jsonl"
{ head -2 "$work/in.jsonl"; echo '{"title": "no text"}'; } >"$work/notext.jsonl"
expect_error "a line without text" "$work/notext.jsonl: line 3: the JSON object has no \"text\" field" \
    "$keel" data dedup "$work/notext.jsonl" --out "$work/o3.jsonl"
echo '{"text": ["not", "a", "string"]}' >"$work/array.jsonl"
expect_error "text that is not a string" "line 1: \"text\" is an array, not a string" "$keel" data dedup "$work/array.jsonl" --out "$work/o4.jsonl"
# Read twice, an input must read the same both times: a pipe is refused up front (it changed between the readings).
expect_error "an input that is a pipe" "is not a regular file: deduplication reads its inputs twice" \
    "$keel" data dedup <(cat "$work/in.jsonl") --out "$work/o5.jsonl"
# Outputs are plain text: a .gz name (read back as gzip, and refused) is refused before anything runs; an output that
# names an input would replace it before it is read.
usage "dedup into a .gz name" "--out $work/o6.jsonl.gz: Keel writes plain text; name it without .gz" \
    "$keel" data dedup "$work/in.jsonl" --out "$work/o6.jsonl.gz"
usage "dedup writing its shingles over its input" "--shingles $work/in.jsonl is one of the inputs" \
    "$keel" data dedup "$work/in.jsonl" --out "$work/o7.jsonl" --shingles "$work/in.jsonl"
usage "filter into a .zst name" "--removed $work/r.jsonl.zst: Keel writes plain text; name it without .zst" \
    "$keel" data filter "$work/in.jsonl" --out "$work/o8.jsonl" --removed "$work/r.jsonl.zst"
# A --temp-dir that cannot hold a directory (a file stands there) is named once, with the level that failed.
touch "$work/plain"
expect_error "a --temp-dir under a file" "deduplication's temporary files: cannot create directory $work/plain/keel-dedup-.*: $work/plain: it exists and is not a directory" \
    "$keel" data dedup "$work/in.jsonl" --out "$work/o9.jsonl" --temp-dir "$work/plain"
cmp -s "$work/in.jsonl" "$work/in.jsonl.before" && pass "the input is as it was" || fail "the input is as it was"
[ ! -e "$work/o9.jsonl" ] && [ ! -e "$work/o1.jsonl" ] && [ ! -e "$work/o2.jsonl" ] && [ ! -e "$work/o3.jsonl" ] && [ ! -e "$work/o4.jsonl" ] \
    && [ -z "$(ls -A "$work" | grep '\.tmp-')" ] && pass "bad input leaves no output file" || fail "bad input leaves no output file"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
