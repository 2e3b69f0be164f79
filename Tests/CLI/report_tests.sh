#!/usr/bin/env bash
# keel report through the real binary: two runs overlaid (one a two-stage pipeline with its trace), the HTML opened
# in headless Chromium (every chart drawn, no script error), the PNG's size, hardware.json, and bad input; and the
# live metrics of keel train: TensorBoard event files read by TensorBoard's reader, a Prometheus endpoint read by
# prometheus_client's parser.
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

# Live metrics. TensorBoard: its own reader (the tensorboard package) finds every step's loss and learning rate and
# every validation loss as metrics.jsonl has them.
expect_ok "training with TensorBoard event files" "$keel" train --config "$work/tiny.toml" --out "$work/tb" --set logging.tensorboard=true
if python3 - "$work/tb" <<'PY' 2>"$work/err"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
events = EventAccumulator(run + "/tensorboard")
events.Reload()
records = [json.loads(line) for line in open(run + "/metrics.jsonl")]
steps = [r for r in records if "loss" in r]
for tag in ["loss", "lr", "grad_norm", "tokens_per_s"]:
    scalars = events.Scalars(tag)
    assert [s.step for s in scalars] == [r["step"] for r in steps], tag
    assert all(abs(s.value - r[tag]) <= 1e-6 * abs(r[tag]) for s, r in zip(scalars, steps)), tag
validation = [r for r in records if "val_loss" in r]
assert [(s.step, round(s.value, 5)) for s in events.Scalars("val_loss")] == [(r["step"], round(r["val_loss"], 5)) for r in validation]
assert len(validation) == 4 and len(steps) == 12
PY
then pass "TensorBoard reads every step's metrics as metrics.jsonl has them"; else fail "TensorBoard reads every step's metrics as metrics.jsonl has them"; fi
# Resumed from step 6 after the run had logged to 12: steps 7 to 12 are in both event files, and TensorBoard shows
# each step once, with the resumed run's values (the new file opens with a session start at step 7).
cp -r "$work/tb" "$work/tb-resumed" && rm -rf "$work/tb-resumed/checkpoints/step_00000012"
expect_ok "resuming the TensorBoard run from step 6" "$keel" train --config "$work/tiny.toml" --out "$work/tb-resumed" \
    --set logging.tensorboard=true --resume
if [ "$(ls "$work/tb-resumed/tensorboard" | wc -l)" -eq 2 ] && python3 - "$work/tb-resumed" <<'PY' 2>"$work/err"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
events = EventAccumulator(run + "/tensorboard")
events.Reload()
steps = [json.loads(line) for line in open(run + "/metrics.jsonl")]
steps = [r for r in steps if "loss" in r]
scalars = events.Scalars("loss")
assert [s.step for s in scalars] == list(range(1, 13)) == [r["step"] for r in steps], [s.step for s in scalars]
assert all(abs(s.value - r["loss"]) <= 1e-6 * abs(r["loss"]) for s, r in zip(scalars, steps))
PY
then pass "TensorBoard shows a resumed run's steps once each"; else fail "TensorBoard shows a resumed run's steps once each"; fi
# A run that failed before its first checkpoint, started afresh in its directory (as --resume-if-any does, and a
# supervisor's restart): metrics.jsonl starts again, and so does TensorBoard — the old file's steps 6 to 12 showed on.
cp -r "$work/tb" "$work/tb-fresh" && rm -rf "$work/tb-fresh/checkpoints"
expect_ok "starting afresh where a run left event files" "$keel" train --config "$work/tiny.toml" --out "$work/tb-fresh" \
    --set logging.tensorboard=true --set training.steps=5 --resume-if-any
if python3 - "$work/tb-fresh" <<'PY' 2>"$work/err"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
events = EventAccumulator(run + "/tensorboard")
events.Reload()
steps = [r for r in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in r]
scalars = events.Scalars("loss")
assert [s.step for s in scalars] == [1, 2, 3, 4, 5] == [r["step"] for r in steps], [s.step for s in scalars]
assert all(abs(s.value - r["loss"]) <= 1e-6 * abs(r["loss"]) for s, r in zip(scalars, steps))
PY
then pass "TensorBoard shows only the steps of a run started afresh"; else fail "TensorBoard shows only the steps of a run started afresh"; fi

# Prometheus: while a run trains, /metrics answers in Prometheus's text format (parsed by prometheus_client) with
# the newest step's loss; other paths are 404.
"$keel" train --config "$work/tiny.toml" --out "$work/prom" --set training.steps=100000 --set checkpoint.every=0 \
    --set training.eval_every=0 --metrics-port 0 >/dev/null 2>"$work/prom.err" &
trainer=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's|^metrics: Prometheus text at http://127.0.0.1:\([0-9]*\)/metrics$|\1|p' "$work/prom.err")
    [ -n "$port" ] && grep -q '"loss"' "$work/prom/metrics.jsonl" 2>/dev/null && break
    sleep 0.1
done
if [ -n "$port" ] && python3 - "$port" "$work/prom/metrics.jsonl" <<'PY' 2>"$work/err"
import json, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families
port = sys.argv[1]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
families = {f.name: f for f in text_string_to_metric_families(text)}
assert families["keel_loss"].type == "gauge" and families["keel_step"].samples[0].value >= 1, text
step = int(families["keel_step"].samples[0].value)
logged = {json.loads(l)["step"]: json.loads(l) for l in open(sys.argv[2]) if '"loss"' in l}
assert abs(families["keel_loss"].samples[0].value - logged[step]["loss"]) <= 1e-6, (step, text)
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    raise AssertionError("404 expected")
except urllib.error.HTTPError as error:
    assert error.code == 404
PY
then pass "Prometheus's parser reads the live metrics (newest step's loss) and other paths are 404"
else fail "Prometheus's parser reads the live metrics (newest step's loss) and other paths are 404"; fi
kill "$trainer" 2>/dev/null; wait "$trainer" 2>/dev/null
usage "a metrics port out of range" "metrics-port" "$keel" train --config "$work/tiny.toml" --out "$work/x" --metrics-port 70000
python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); import time; time.sleep(30)" >"$work/busy" &
holder=$!
for _ in $(seq 1 50); do [ -s "$work/busy" ] && break; sleep 0.1; done
expect_error "a metrics port in use" "--metrics-port: cannot listen on 127.0.0.1:$(cat "$work/busy")" "$keel" train --config "$work/tiny.toml" --out "$work/busyrun" --metrics-port "$(cat "$work/busy")"
[ ! -e "$work/busyrun/metrics.jsonl" ] && pass "a port in use is found out before training starts" || fail "a port in use is found out before training starts"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
usage "a metrics host that is not an address" "metrics-host" "$keel" train --config "$work/tiny.toml" --out "$work/x" --metrics-port 0 --metrics-host localhost

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
