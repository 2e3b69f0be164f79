#!/usr/bin/env bash
# keel report through the real binary: two runs overlaid (one a two-stage pipeline with its trace), the HTML opened
# in headless Chromium (every chart drawn, no script error), the PNG's size, hardware.json, and bad input.
# Usage: Tests/CLI/report_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: report_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cli_common.sh"
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
browser=$(command -v chromium-headless-shell || command -v chromium)
[ -n "$browser" ] || { echo "FAIL report tests need headless Chromium (scripts/setup.sh installs chromium-headless-shell)"; exit 1; }
sandbox=(); [ "$(id -u)" -eq 0 ] && sandbox=(--no-sandbox)

mkdir -p "$work/corpus"
for i in 1 2 3; do
    for j in $(seq 1 80); do echo "All the world's a stage, and all the men and women merely players $i $j."; done >"$work/corpus/doc$i.txt"
done
cat >"$work/tiny.toml" <<TOML
[model]
n_layer = 2
n_head = 2
d_model = 32
max_seq_len = 32
[data]
paths = ["$work/corpus"]
[training]
steps = 12
batch_size = 2
lr = 3e-3
eval_every = 4
eval_batches = 2
[checkpoint]
every = 6
[logging]
every = 100
TOML
expect_ok "a one-process run" "$keel" train --config "$work/tiny.toml" --out "$work/one"
expect_ok "a two-stage pipeline run with a trace" "${mpi[@]}" "$keel" train --config "$work/tiny.toml" --out "$work/pp2" \
    --set parallel.pp=2 --set parallel.micro_batches=4 --trace "$work/trace.json"
check "keel train records the hardware: this CPU, 2 processes" \
    "(h := json.load(open(sys.argv[1]))) and h['processes'] == 2 and h['logical_cores'] >= 1 and h['cpu'] != 'unknown'" "$work/pp2/hardware.json"

expect_ok "keel report of two runs with the trace and a PNG" "$keel" report "$work/one" "$work/pp2" --trace "$work/trace.json" \
    --out "$work/report.html" --png "$work/report.png" --peak-tflops 0.2
charts=$(grep -c '<svg ' "$work/report.html")
# loss, loss against tokens, lr, grad norm, throughput, MFU, checkpoint stalls, bubble, timeline.
[ "$charts" -eq 9 ] && pass "the report has nine charts" || fail "the report has nine charts (got $charts)"
grep -q 'data-name="one"' "$work/report.html" && grep -q 'data-name="pp2"' "$work/report.html" \
    && grep -q 'data-name="pp2 validation"' "$work/report.html" && grep -q "Model FLOPs utilisation" "$work/report.html" \
    && grep -q "Pipeline timeline" "$work/report.html" && grep -q "rank 1: stage 1" "$work/report.html" \
    && pass "both runs overlaid, validation, MFU and the pipeline timeline" || fail "both runs overlaid, validation, MFU and the pipeline timeline"
grep -q 'src="http\|href="http' "$work/report.html" && fail "the report loads nothing from the network" || pass "the report loads nothing from the network"

# A real browser: every chart drawn (a non-empty box with its lines or bars) and no script error.
"$browser" "${sandbox[@]}" --headless --disable-gpu --enable-logging=stderr --v=0 --dump-dom "file://$work/report.html" \
    >"$work/dom.html" 2>"$work/browser.err"
body=$(grep -o '<body[^>]*>' "$work/dom.html")
[[ "$body" == *'data-charts="9"'* && "$body" == *'data-drawn="9"'* && "$body" != *data-error* ]] \
    && ! grep -qi "uncaught" "$work/browser.err" \
    && pass "Chromium draws all nine charts without script errors" \
    || fail "Chromium draws all nine charts without script errors: $body $(grep -i uncaught "$work/browser.err" | head -2)"
check "the PNG is the size keel report names" \
    "(b := open(sys.argv[1], 'rb').read()) and b[:8] == b'\\x89PNG\\r\\n\\x1a\\n' and int.from_bytes(b[16:20], 'big') == int(sys.argv[2].split()[0]) \
     and int.from_bytes(b[20:24], 'big') == int(sys.argv[2].split()[2])" "$work/report.png" "$(sed -n 's/.*(\(.*\) pixels).*/\1/p' "$work/out")"

expect_ok "keel report of one run, default place" "$keel" report "$work/one"
[ -s "$work/one/report.html" ] && grep -q "Hardware: " "$work/one/report.html" && ! grep -q "Pipeline" "$work/one/report.html" \
    && pass "one run's report beside it, with its hardware, without pipeline charts" || fail "one run's report beside it, with its hardware, without pipeline charts"

expect_error "a directory that is not a run" "is $work/corpus a run directory" "$keel" report "$work/corpus"
printf '{"step": 1, "loss": 2.0}\nnot json\n' >"$work/bad.jsonl"; mkdir -p "$work/bad" && mv "$work/bad.jsonl" "$work/bad/metrics.jsonl"
expect_error "a damaged metrics line" "metrics.jsonl:2" "$keel" report "$work/bad"
mkdir -p "$work/empty" && : >"$work/empty/metrics.jsonl"
expect_error "a run with no steps yet" "no training steps yet" "$keel" report "$work/empty"
expect_error "a trace that is not one" "is not a Chrome trace" "$keel" report "$work/one" --trace "$work/one/config.toml" --out "$work/r2.html"
[ ! -e "$work/r2.html" ] && pass "a bad trace leaves no report behind" || fail "a bad trace leaves no report behind"
expect_error "--png with a browser that is not there" "not an executable file" "$keel" report "$work/one" --png "$work/x.png" \
    --chromium "$work/nope" --out "$work/r3.html"
[ ! -e "$work/r3.html" ] && pass "a missing browser is found out before anything is written" || fail "a missing browser is found out before anything is written"
usage "a negative peak" "peak-tflops" "$keel" report "$work/one" --peak-tflops -1

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
