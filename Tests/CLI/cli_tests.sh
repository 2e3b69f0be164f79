#!/usr/bin/env bash
# Command-line tests: exit codes, one-line errors and files on disk, through the real `keel` binary.
# Usage: Tests/CLI/cli_tests.sh PATH_TO_KEEL
set -uo pipefail
keel=$(realpath "${1:?usage: cli_tests.sh PATH_TO_KEEL}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cli_common.sh"
# Calibrations this script's runs make go to a scratch cache unless the caller chose one (scripts/test.sh does).
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$work/xdg-cache}"

# start_server MODEL: keel serve of MODEL on a free port, in the background: sets $server (its pid) and $port (empty
# when it did not say it was serving within 10 s). stop_server ends it.
start_server() {
    rm -f "$work/serve.out"  # the last server's port is not this one's
    "$keel" serve --checkpoint "$1" --port 0 "${@:2}" >"$work/serve.out" 2>"$work/serve.err" &
    server=$!
    for _ in $(seq 1 100); do grep -q "^serving" "$work/serve.out" && break; sleep 0.1; done
    port=$(sed -n 's|^serving keel on http://127.0.0.1:\([0-9]*\)/v1$|\1|p' "$work/serve.out")
}
stop_server() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
# wait_for PID SECONDS: waits for PID to end, killing it after SECONDS (a test fails rather than hangs); its exit status.
wait_for() {
    for _ in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null
    wait "$1"
}
# post PATH JSON: POSTs JSON to the running server's /v1/PATH; the response goes to $work/response.json (empty when
# the request fails, which the checks reading it then fail on).
post() {
    python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={"Content-Type": "application/json"})).read())' \
        "http://127.0.0.1:$port/v1/$1" "$2" >"$work/response.json" 2>/dev/null
}

mkdir -p "$work/corpus"
for i in 1 2 3; do
    for j in $(seq 1 60); do echo "To be, or not to be, that is the question $i $j."; done >"$work/corpus/doc$i.txt"
done
cat >"$work/tiny.toml" <<TOML
[model]
n_layer = 1
n_head = 2
d_model = 16
max_seq_len = 16
[data]
paths = ["$work/corpus"]
[training]
steps = 6
batch_size = 2
lr = 1e-3
eval_every = 0
eval_batches = 1
[checkpoint]
every = 2
[logging]
every = 100
TOML

expect_ok "help lists the subcommands" "$keel" --help
grep -q "train" "$work/out" && grep -q "export" "$work/out" && pass "help mentions train and export" || fail "help mentions train and export"
expect_ok "train --help" "$keel" train --help
grep -q -- "--config" "$work/out" && grep -q -- "--resume" "$work/out" && grep -q -- "--set" "$work/out" \
    && grep -q -- "--stop-after" "$work/out" && pass "train --help lists its options" || fail "train --help lists its options"

expect_error "missing config file" "no such file" "$keel" train --config "$work/nope.toml" --out "$work/r0"
usage "--resume with --resume-if-any" "give --resume or --resume-if-any, not both" \
    "$keel" train --resume --resume-if-any --out "$work/r0"
expect_error "unknown config key" "unknown key 'training.stepz'" "$keel" train --config "$work/tiny.toml" --out "$work/r0" --set training.stepz=3
expect_error "impossible model shape" "model.n_head" "$keel" train --config "$work/tiny.toml" --out "$work/r0" --set model.n_head=3
expect_error "missing data file" "no such file or directory: $work/missing.txt" \
    "$keel" train --config "$work/tiny.toml" --out "$work/r0" --set "data.paths=[\"$work/missing.txt\"]"

expect_ok "train stops after step 4" "$keel" train --config "$work/tiny.toml" --out "$work/run" --stop-after 4
[ "$(grep -c '"loss"' "$work/run/metrics.jsonl")" -eq 4 ] && pass "4 step records" || fail "4 step records"
expect_error "fresh train refuses an existing run" "--resume" "$keel" train --config "$work/tiny.toml" --out "$work/run"
expect_ok "resume finishes the run" "$keel" train --resume --out "$work/run"
[ "$(grep -c '"loss"' "$work/run/metrics.jsonl")" -eq 6 ] && pass "6 step records after resume" || fail "6 step records after resume"
grep -q "validation loss" "$work/out" && pass "summary printed" || fail "summary printed"
# A finished run resumed again (a requeued job) trains nothing and says so, where it printed a throughput of 0.
cp -r "$work/run" "$work/run-done"
expect_ok "resume of a finished run" "$keel" train --resume --out "$work/run-done"
grep -q "^nothing trained: the run is at step 6 and training.steps is 6$" "$work/out" && ! grep -q "throughput" "$work/out" \
    && pass "a finished run says it trained nothing" || fail "a finished run says it trained nothing"
# A run begun when Keel padded the vocabulary for tensor parallelism records its size only in its config.toml: resumed
# with the job's own --config, which leaves the size out, it keeps the recorded one. A changed setting is named.
expect_ok "a run whose config.toml records its vocabulary size" "$keel" train --config "$work/tiny.toml" --out "$work/padded" \
    --set model.vocab_size=258 --stop-after 2
expect_ok "resumed with a config that leaves the size out" "$keel" train --config "$work/tiny.toml" --out "$work/padded" --resume \
    --set training.lr=0.002
grep -q "note: settings changed since step_00000002 was written: .*training.lr 0.001 → 0.002" "$work/err" \
    && pass "the resume names the changed learning rate" || fail "the resume names the changed learning rate"
check "metrics steps are 1..6, once each, with finite losses" \
    '[r["step"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r] == [1, 2, 3, 4, 5, 6] and all(r["loss"] > 0 for r in map(json.loads, open(sys.argv[1])) if "loss" in r)' \
    "$work/run/metrics.jsonl"
# A resume on other data, or on settings that cut it into other windows, is refused (status 3: a restart would not
# mend it) unless --accept-changed-data, which says what changed and goes on.
usage "--accept-changed-data without --resume" "--accept-changed-data goes with --resume or --resume-if-any" \
    "$keel" train --config "$work/tiny.toml" --out "$work/r0" --accept-changed-data
expect_ok "a run to resume on other windows" "$keel" train --config "$work/tiny.toml" --out "$work/rewindowed" --stop-after 2
"$keel" train --resume --out "$work/rewindowed" --set training.seq_len=8 >"$work/out" 2>"$work/err"
status=$?
[ $status -eq 3 ] && grep -q "^Error: --resume: the data is not what step_00000002 was trained on (.*window length (training.seq_len) 16 there, 8 here): .*pass --accept-changed-data" "$work/err" \
    && pass "a resume on other windows is refused with status 3, naming what changed" \
    || fail "a resume on other windows is refused with status 3, naming what changed (exit $status: $(tail -1 "$work/err"))"
expect_ok "--accept-changed-data goes on" "$keel" train --resume --out "$work/rewindowed" --set training.seq_len=8 --accept-changed-data
grep -q "^note: the data is not what step_00000002 was trained on (.*window length (training.seq_len) 16 there, 8 here); going on with this data from position 4" "$work/err" \
    && pass "--accept-changed-data says what changed" || fail "--accept-changed-data says what changed"

# bf16 training on each engine this CPU has: the log and hardware.json name the engine (the log says when it is no
# faster than fp32), and the engines other than AMX and blas sum in the same order, so their runs' losses are the same
# floats; blas (the fp32 library on the rounded operands, on every CPU) differs from them by the order of sums only.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { for flag in "$@"; do grep -qw "$flag" <<<"$flags" || return 1; done; }
engines="portable blas" same_order=""
if has avx2 fma; then engines="$engines avx2" same_order="$same_order avx2"; else echo "not run: the avx2 engine (no AVX2 + FMA)"; fi
if has avx2 fma avx512f; then engines="$engines avx512f" same_order="$same_order avx512f"
else echo "not run: the avx512f engine (no AVX-512F)"; fi
if has avx512f avx512bw avx512vl avx512_bf16; then engines="$engines avx512" same_order="$same_order avx512"
else echo "not run: the avx512 engine (no AVX512-BF16)"; fi
if has amx_bf16 amx_tile avx512_bf16; then engines="$engines amx"; else echo "not run: the amx engine (no AMX)"; fi
echo "bf16 engines compared on this CPU: $engines"
for engine in $engines; do
    expect_ok "bf16 training on the $engine engine" env KEEL_BF16_ENGINE=$engine "$keel" train --config "$work/tiny.toml" \
        --out "$work/bf16-$engine" --set 'training.precision="bf16"'
    cat "$work/out" "$work/err" >"$work/bf16-$engine.log"
    grep -q "bf16 matrix products on $engine" "$work/bf16-$engine.log" && pass "the log names the $engine engine" \
        || fail "the log names the $engine engine"
    check "hardware.json names the $engine engine" 'json.load(open(sys.argv[1]))["bf16_engine"] == sys.argv[2]' \
        "$work/bf16-$engine/hardware.json" "$engine"
done
grep -q "bf16 matrix products on portable (plain C: the same results as AVX512-BF16, several times slower than fp32)" \
    "$work/bf16-portable.log" && pass "the log says the portable engine is slow" || fail "the log says the portable engine is slow"
check "an fp32 run's hardware.json names no bf16 engine" '"bf16_engine" not in json.load(open(sys.argv[1]))' \
    "$work/run/hardware.json"
for engine in $same_order; do
    check "bf16 losses on $engine equal the portable engine's, bit for bit" \
        '[r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r] == [r["loss"] for r in map(json.loads, open(sys.argv[2])) if "loss" in r]' \
        "$work/bf16-$engine/metrics.jsonl" "$work/bf16-portable/metrics.jsonl"
done
# Summing in another order moves the losses far less than bf16's rounding does (the fp32 run's distance from them).
check "bf16 losses on blas are within a tenth of fp32's distance from the portable engine's" \
    '(lambda L: len(L(1)) == len(L(3)) == 6 and max(abs(x - y) for x, y in zip(L(1), L(3))) < 0.1 * max(abs(x - y) for x, y in zip(L(2), L(3))))(lambda i: [r["loss"] for r in map(json.loads, open(sys.argv[i])) if "loss" in r])' \
    "$work/bf16-blas/metrics.jsonl" "$work/run/metrics.jsonl" "$work/bf16-portable/metrics.jsonl"

# The fp32 matrix library: measured against the others this machine has, the result cached per machine, or
# named by KEEL_BLAS; hardware.json records which and why.
libraries=1 blis=0
[ -e /usr/lib/x86_64-linux-gnu/libblis.so.4 ] && blis=1 && libraries=$((libraries + 1))
for directory in ${PATH//:/ }; do
    [ -e "$directory/../lib/libmkl_rt.so.2" ] && libraries=$((libraries + 1)) && break
done
expect_ok "train with a fresh BLAS calibration cache" env XDG_CACHE_HOME="$work/cache" "$keel" train --config "$work/tiny.toml" \
    --out "$work/blas-run" --set training.steps=1
if [ "$libraries" -gt 1 ]; then
    check "the calibration is saved with a rate per library" \
        'len(json.load(open(sys.argv[1]))["rates"]) == int(sys.argv[2]) and all(r > 0 for r in json.load(open(sys.argv[1]))["rates"].values()) and any(k.startswith("OpenBLAS") and "(kernels: " in k for k in json.load(open(sys.argv[1]))["rates"])' \
        "$work/cache/keel/blas.json" "$libraries"
    check "hardware.json says the library was calibrated and where the result is" \
        '"calibrated: " in json.load(open(sys.argv[1]))["blas"] and sys.argv[2] in json.load(open(sys.argv[1]))["blas"]' \
        "$work/blas-run/hardware.json" "$work/cache/keel/blas.json"
    cp "$work/cache/keel/blas.json" "$work/blas-first.json"
    expect_ok "train again with the cache" env XDG_CACHE_HOME="$work/cache" "$keel" train --config "$work/tiny.toml" \
        --out "$work/blas-run2" --set training.steps=1
    cmp -s "$work/cache/keel/blas.json" "$work/blas-first.json" && grep -q "cached in" "$work/blas-run2/hardware.json" \
        && pass "the second run reads the calibration instead of measuring" || fail "the second run reads the calibration instead of measuring"
else
    echo "not run: calibration cache checks (only OpenBLAS on this machine)"
    grep -q "the only BLAS library here" "$work/blas-run/hardware.json" && pass "hardware.json says OpenBLAS is the only library" \
        || fail "hardware.json says OpenBLAS is the only library"
fi
if [ "$blis" -eq 1 ]; then
    # BLIS's cblas_sgemm calls sgemm_, which OpenBLAS (linked into keel) also exports: it must be BLIS's own.
    LD_DEBUG=bindings KEEL_BLAS=blis "$keel" train --config "$work/tiny.toml" --out "$work/blas-blis" --set training.steps=1 \
        >/dev/null 2>"$work/bindings"
    grep -q "binding file [^ ]*libblis.so.4 .* to [^ ]*libblis.so.4 .*symbol \`sgemm_'" "$work/bindings" \
        && ! grep -q "binding file [^ ]*libblis.so.4 .* to [^ ]*libopenblas.so.0 .*symbol \`sgemm_'" "$work/bindings" \
        && pass "KEEL_BLAS=blis runs BLIS's own sgemm_" || fail "KEEL_BLAS=blis runs BLIS's own sgemm_"
else
    echo "not run: BLIS's symbol bindings (BLIS is not installed)"
fi
expect_ok "KEEL_BLAS=openblas" env KEEL_BLAS=openblas "$keel" train --config "$work/tiny.toml" --out "$work/blas-named" --set training.steps=1
grep -q '"blas" : "OpenBLAS.*chosen by KEEL_BLAS=openblas"' "$work/blas-named/hardware.json" \
    && pass "hardware.json records the library KEEL_BLAS named" || fail "hardware.json records the library KEEL_BLAS named"
for value in nonsense /nonexistent/libblas.so; do
    expect_ok "KEEL_BLAS=$value still trains" env KEEL_BLAS=$value XDG_CACHE_HOME="$work/cache" "$keel" train --config "$work/tiny.toml" \
        --out "$work/blas-$(basename $value)" --set training.steps=1
    [ "$(grep -c "^keel: warning: KEEL_BLAS=$value" "$work/err")" -eq 1 ] && pass "KEEL_BLAS=$value is warned about once" \
        || fail "KEEL_BLAS=$value is warned about once"
done

# OpenBLAS's kernel set on AVX-512 CPUs: Haswell's and SkylakeX's timed in processes of their own, the rates cached per
# machine, the faster loaded; a kernel set the user names is kept without measuring. KEEL_BLAS=openblas: where BLIS or
# MKL is level with OpenBLAS, the library calibration could pick either, and hardware.json would then not be OpenBLAS's.
if grep -q -w avx512f /proc/cpuinfo; then
    expect_ok "train with a fresh cache of OpenBLAS's kernel rates" env -u OPENBLAS_CORETYPE -u KEEL_NO_REEXEC KEEL_BLAS=openblas \
        XDG_CACHE_HOME="$work/kernels-cache" "$keel" train --config "$work/tiny.toml" --out "$work/kernels-run" --set training.steps=1
    check "both kernel sets were timed and the faster runs (SkylakeX unless it is 3% slower), as hardware.json says" \
        '(r := json.load(open(sys.argv[1]))["rates"]) and sorted(k.split("(kernels: ")[1] for k in r) == ["Haswell)", "SkylakeX)"] and all(k.startswith("OpenBLAS ") for k in r) and all(v > 0 for v in r.values()) and ("(kernels: %s)" % ("SkylakeX" if [v for k, v in r.items() if "SkylakeX" in k][0] >= 0.97 * max(r.values()) else "Haswell")) in (b := json.load(open(sys.argv[2]))["blas"]) and "kernels chosen by measurement: " in b and "saved to " + sys.argv[1] in b' \
        "$work/kernels-cache/keel/openblas-kernels.json" "$work/kernels-run/hardware.json"
    cp "$work/kernels-cache/keel/openblas-kernels.json" "$work/kernels-first.json"
    expect_ok "train again with the kernel rates cached" env -u OPENBLAS_CORETYPE -u KEEL_NO_REEXEC KEEL_BLAS=openblas \
        XDG_CACHE_HOME="$work/kernels-cache" "$keel" train --config "$work/tiny.toml" --out "$work/kernels-run2" --set training.steps=1
    cmp -s "$work/kernels-cache/keel/openblas-kernels.json" "$work/kernels-first.json" \
        && grep -q "kernels chosen by measurement: .*(cached in " "$work/kernels-run2/hardware.json" \
        && pass "the second run reads the kernel rates instead of timing" || fail "the second run reads the kernel rates instead of timing"
    echo "{not json" >"$work/kernels-cache/keel/openblas-kernels.json"
    expect_ok "train with an unreadable cache of kernel rates" env -u OPENBLAS_CORETYPE -u KEEL_NO_REEXEC KEEL_BLAS=openblas \
        XDG_CACHE_HOME="$work/kernels-cache" "$keel" train --config "$work/tiny.toml" --out "$work/kernels-run3" --set training.steps=1
    check "an unreadable cache of kernel rates is measured again and replaced" \
        'len(json.load(open(sys.argv[1]))["rates"]) == 2' "$work/kernels-cache/keel/openblas-kernels.json"
    expect_ok "train with OPENBLAS_CORETYPE=SkylakeX" env -u KEEL_NO_REEXEC OPENBLAS_CORETYPE=SkylakeX KEEL_BLAS=openblas \
        XDG_CACHE_HOME="$work/kernels-named" "$keel" train --config "$work/tiny.toml" --out "$work/kernels-named-run" --set training.steps=1
    grep -q '"blas" : "OpenBLAS[^"]*(kernels: SkylakeX)' "$work/kernels-named-run/hardware.json" \
        && ! grep -q "kernels chosen" "$work/kernels-named-run/hardware.json" && [ ! -e "$work/kernels-named/keel/openblas-kernels.json" ] \
        && pass "a kernel set the user names is kept, nothing timed" || fail "a kernel set the user names is kept, nothing timed"
    expect_ok "train with KEEL_NO_REEXEC=1" env -u OPENBLAS_CORETYPE KEEL_NO_REEXEC=1 KEEL_BLAS=openblas \
        XDG_CACHE_HOME="$work/kernels-kept" "$keel" train --config "$work/tiny.toml" --out "$work/kernels-kept-run" --set training.steps=1
    [ -f "$work/kernels-kept-run/hardware.json" ] && ! grep -q "kernels chosen" "$work/kernels-kept-run/hardware.json" \
        && [ ! -e "$work/kernels-kept/keel/openblas-kernels.json" ] \
        && pass "KEEL_NO_REEXEC=1 leaves OpenBLAS's kernels to OpenBLAS, nothing timed" \
        || fail "KEEL_NO_REEXEC=1 leaves OpenBLAS's kernels to OpenBLAS, nothing timed"
else
    echo "not run: OpenBLAS's kernel choice (no AVX-512 on this CPU: OpenBLAS picks its own AVX2 kernels)"
    expect_ok "train without AVX-512" env XDG_CACHE_HOME="$work/kernels-cache" "$keel" train --config "$work/tiny.toml" \
        --out "$work/kernels-run" --set training.steps=1
    [ ! -e "$work/kernels-cache/keel/openblas-kernels.json" ] && ! grep -q "kernels chosen" "$work/kernels-run/hardware.json" \
        && pass "without AVX-512 no kernel set is timed" || fail "without AVX-512 no kernel set is timed"
fi

expect_ok "sample" "$keel" sample --checkpoint "$work/run" --tokens 20 --prompt "To be"
cp "$work/out" "$work/sample1"
"$keel" sample --checkpoint "$work/run" --tokens 20 --prompt "To be" >"$work/sample2" 2>/dev/null
"$keel" sample --checkpoint "$work/run" --tokens 20 --prompt "To be" --seed 2 >"$work/sample3" 2>/dev/null
check "sample continues the prompt, the same for the same seed and otherwise for another" \
    'open(sys.argv[1], "rb").read().startswith(b"To be") and len(open(sys.argv[1], "rb").read()) > 6 and open(sys.argv[1], "rb").read() == open(sys.argv[2], "rb").read() != open(sys.argv[3], "rb").read()' \
    "$work/sample1" "$work/sample2" "$work/sample3"
# keel generate: the KV-cache decoder. Greedy text is sample's greedy text; prompts in a batch each get what they
# get alone; a stop string ends the text before it; bad options and an impossible quantization are one error each.
"$keel" sample --checkpoint "$work/run" --tokens 12 --prompt "To be" --temperature 0 >"$work/greedy-sample" 2>/dev/null
expect_ok "generate greedy" "$keel" generate --checkpoint "$work/run" --max-tokens 12 --prompt "To be" --temperature 0
check "generate's greedy text is sample's, the prompt first" \
    'open(sys.argv[1], "rb").read() == open(sys.argv[2], "rb").read() and open(sys.argv[1], "rb").read().startswith(b"To be")' \
    "$work/out" "$work/greedy-sample"
expect_ok "generate a batch" "$keel" generate --checkpoint "$work/run" --max-tokens 15 --prompt "To be" --prompt "What" --json --seed 4
cp "$work/out" "$work/batch.jsonl"
"$keel" generate --checkpoint "$work/run" --max-tokens 15 --prompt "What" --json --seed 4 >"$work/alone.jsonl" 2>/dev/null
check "each prompt of a batch gets one JSON line, the second as it gets alone" \
    '(lambda b, a: [x["prompt"] for x in b] == ["To be", "What"] and b[1]["text"] == a[0]["text"] and all(x["tokens"] == 15 and x["stop"] == "length" for x in b))([json.loads(l) for l in open(sys.argv[1])], [json.loads(l) for l in open(sys.argv[2])])' \
    "$work/batch.jsonl" "$work/alone.jsonl"
# The stop string: the first printable ASCII character after the first one of the generated text.
stop=$(python3 -c 'import json, sys; t = json.loads(open(sys.argv[1]).readline())["text"]; print(next(c for c in t[1:] if c.isascii() and c.isprintable() and c != " "))' "$work/batch.jsonl")
expect_ok "generate with a stop string" "$keel" generate --checkpoint "$work/run" --max-tokens 15 --prompt "To be" --json --seed 4 --stop "$stop"
check "a stop string ends the text before it" \
    '(lambda r, full, stop: r["stop"] == "string" and stop not in r["text"] and full.startswith(r["text"]) and len(r["text"]) < len(full))(json.loads(open(sys.argv[1]).readline()), json.loads(open(sys.argv[2]).readline())["text"], sys.argv[3])' \
    "$work/out" "$work/batch.jsonl" "$stop"
# A stop string of two bytes, so two tokens of this byte-level model: found though each token adds one byte. (The
# first two printable ASCII characters in a row after the first one of the text; none is an error, not a skip.)
stop2=$(python3 -c 'import json, re, sys; t = json.loads(open(sys.argv[1]).readline())["text"]; print(re.search(r"[!-,.-~]{2}", t[1:]).group(0))' "$work/batch.jsonl")
expect_ok "generate with a stop string of two tokens" "$keel" generate --checkpoint "$work/run" --max-tokens 15 --prompt "To be" --json --seed 4 --stop "$stop2"
check "a stop string spanning tokens ends the text before it" \
    '(lambda r, full, stop: len(stop) == 2 and r["stop"] == "string" and stop not in r["text"] and full.startswith(r["text"]) and len(r["text"]) < len(full))(json.loads(open(sys.argv[1]).readline()), json.loads(open(sys.argv[2]).readline())["text"], sys.argv[3])' \
    "$work/out" "$work/batch.jsonl" "$stop2"
# A repetition penalty changes greedy text (40 tokens of this model's greedy text repeat some).
expect_ok "generate greedy, 40 tokens" "$keel" generate --checkpoint "$work/run" --max-tokens 40 --prompt "To be" --temperature 0 --json
cp "$work/out" "$work/greedy40.jsonl"
expect_ok "generate greedy with a repetition penalty" "$keel" generate --checkpoint "$work/run" --max-tokens 40 --prompt "To be" \
    --temperature 0 --json --repetition-penalty 100
cp "$work/out" "$work/penalized40.jsonl"
check "a repetition penalty changes the greedy text" \
    'json.loads(open(sys.argv[1]).readline())["text"] != json.loads(open(sys.argv[2]).readline())["text"]' \
    "$work/greedy40.jsonl" "$work/penalized40.jsonl"
usage "generate with a repetition penalty of 0" "--repetition-penalty must be a finite number above 0 (got 0.0)" \
    "$keel" generate --checkpoint "$work/run" --repetition-penalty 0
# So do OpenAI's presence and frequency penalties.
expect_ok "generate greedy with presence and frequency penalties" "$keel" generate --checkpoint "$work/run" --max-tokens 40 \
    --prompt "To be" --temperature 0 --json --presence-penalty 2 --frequency-penalty 2
cp "$work/out" "$work/presence40.jsonl"
check "presence and frequency penalties change the greedy text" \
    'json.loads(open(sys.argv[1]).readline())["text"] != json.loads(open(sys.argv[2]).readline())["text"]' \
    "$work/greedy40.jsonl" "$work/presence40.jsonl"
usage "generate with a presence penalty of 3" "--presence-penalty must be between -2 and 2 (got 3.0)" \
    "$keel" generate --checkpoint "$work/run" --presence-penalty 3
# keel serve takes the penalty as llama.cpp's server does (repetition_penalty, a field OpenAI's API lacks); with
# --context-shift its replies go past the context (16 tokens here) as generate's do.
start_server "$work/run" --context-shift
post completions '{"prompt": "To be", "max_tokens": 40, "temperature": 0, "repetition_penalty": 100}'
check "serve's completion with repetition_penalty is generate's penalized text" \
    '(lambda c, r: c["text"] == r["text"])(json.load(open(sys.argv[1]))["choices"][0], json.loads(open(sys.argv[2]).readline()))' \
    "$work/response.json" "$work/penalized40.jsonl"
post completions '{"prompt": "To be", "max_tokens": 40, "temperature": 0, "presence_penalty": 2, "frequency_penalty": 2}'
check "serve's completion with OpenAI's penalties is generate's penalized text" \
    '(lambda c, r: c["text"] == r["text"])(json.load(open(sys.argv[1]))["choices"][0], json.loads(open(sys.argv[2]).readline()))' \
    "$work/response.json" "$work/presence40.jsonl"
stop_server
# Without it a reply ends where the context is full, and a prompt the context cannot hold with room for a reply is
# refused (400, context_length_exceeded), as llama.cpp's server does; the usage counts what the model read.
start_server "$work/run"
post completions '{"prompt": "To be", "max_tokens": 40, "temperature": 0}'
check "without --context-shift a completion ends where the context is full" \
    '(lambda r: r["choices"][0]["finish_reason"] == "length" and r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] == 16 == r["usage"]["total_tokens"])(json.load(open(sys.argv[1])))' \
    "$work/response.json"
python3 -c '
import json, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=json.dumps({"prompt": "To be, or not to be"}).encode()))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "error": json.loads(error.read())["error"]}))
' "http://127.0.0.1:$port/v1/completions" >"$work/refused.json"
check "a prompt longer than the context is refused, naming both lengths" \
    '(lambda r: r["status"] == 400 and r["error"]["code"] == "context_length_exceeded" and r["error"]["message"].startswith("the prompt is 19 tokens, and the context is 16"))(json.load(open(sys.argv[1])))' \
    "$work/refused.json"
stop_server
# --ctx-size holds a request to fewer tokens than the model's context (a GGUF's may be 131,072, read in one pass).
start_server "$work/run" --ctx-size 8
python3 -c '
import json, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=json.dumps({"prompt": "To be, or not"}).encode()))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "error": json.loads(error.read())["error"]}))
' "http://127.0.0.1:$port/v1/completions" >"$work/refused.json"
post completions '{"prompt": "To", "max_tokens": 40, "temperature": 0}'
check "serve --ctx-size 8 refuses a longer prompt and ends a reply at 8 tokens" \
    '(lambda r, c: r["status"] == 400 and r["error"]["message"].startswith("the prompt is 13 tokens, and the context is 8") and c["usage"]["total_tokens"] == 8)(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' \
    "$work/refused.json" "$work/response.json"
grep -q "^context: 8 tokens per request (of the model's 16; --ctx-size)$" "$work/serve.err" \
    && pass "serve says the context it holds requests to" || fail "serve says the context it holds requests to"
stop_server
# --max-connections: two clients that hold their connections open (sending a request slowly) take them all; a third,
# whose request is whole, is answered 503 (served, without the cap); once they go, requests are served again.
start_server "$work/run" --max-connections 2
python3 -c '
import json, socket, sys, time, urllib.error, urllib.request
port = int(sys.argv[1])
slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
for s in slow: s.sendall(b"POST /v1/completions HTTP/1.1\r\n")
time.sleep(0.5)
try:
    urllib.request.urlopen("http://127.0.0.1:%d/v1/models" % port, timeout=10)
    refused = None
except urllib.error.HTTPError as error:
    refused = error.code
for s in slow: s.close()
time.sleep(0.5)
served = urllib.request.urlopen("http://127.0.0.1:%d/v1/models" % port, timeout=10).status
print(json.dumps({"refused": refused, "served": served}))
' "$port" >"$work/connections.json"
check "serve --max-connections 2 answers a third connection 503, and serves again once they close" \
    '(lambda r: r["refused"] == 503 and r["served"] == 200)(json.load(open(sys.argv[1])))' "$work/connections.json"
stop_server
# SIGTERM stops serve gracefully: new connections are refused at once; a request in flight has --shutdown-timeout to
# finish, and one still generating after it ends with an error event that OpenAI's client raises (the stream was cut
# off, and the client saw it end as if complete).
start_server "$work/run" --context-shift --shutdown-timeout 1
timeout 120 python3 -c '
import json, os, signal, sys, urllib.request
from openai import OpenAI
port, server = sys.argv[1], int(sys.argv[2])
client = OpenAI(base_url="http://127.0.0.1:%s/v1" % port, api_key="none", max_retries=0)
events, refused, outcome = 0, None, None
try:
    for event in client.completions.create(model="keel", prompt="To be", max_tokens=100000, temperature=0, stream=True):
        events += 1
        if events == 5:
            os.kill(server, signal.SIGTERM)
        if events == 40 and refused is None:
            try:
                urllib.request.urlopen("http://127.0.0.1:%s/v1/models" % port, timeout=2)
                refused = False
            except OSError:
                refused = True
    outcome = "ended as if complete"
except Exception as error:
    outcome = "%s: %s" % (type(error).__name__, error)
print(json.dumps({"events": events, "refused": refused, "outcome": outcome}))
' "$port" "$server" >"$work/shutdown.json" 2>"$work/err"
wait_for "$server" 60
status=$?
check "SIGTERM refuses new connections and ends a stream still generating after --shutdown-timeout with an error" \
    '(lambda r: r["refused"] is True and r["outcome"].startswith("APIError: the server is stopping: the reply was cut short after "))(json.load(open(sys.argv[1])))' \
    "$work/shutdown.json"
[ $status -eq 0 ] && grep -q "^serve: SIGTERM: no new connections; 1 in flight, given up to 1 s$" "$work/serve.err" \
    && grep -q "ended early: the server is stopping$" "$work/serve.err" && tail -1 "$work/serve.err" | grep -q "^serve: stopped by SIGTERM$" \
    && pass "serve stopped by SIGTERM says so and exits 0" || fail "serve stopped by SIGTERM says so and exits 0 (exit $status)"
# A request in flight that finishes within the time given is answered whole.
start_server "$work/run" --context-shift --shutdown-timeout 60
timeout 120 python3 -c '
import json, os, signal, sys, urllib.request
port, server = sys.argv[1], int(sys.argv[2])
body = json.dumps({"prompt": "To be", "max_tokens": 2000, "temperature": 0, "stream": True}).encode()
response = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%s/v1/completions" % port, data=body))
first = response.readline()
os.kill(server, signal.SIGTERM)
print((first + response.read()).decode())
' "$port" "$server" >"$work/finished.txt" 2>"$work/err"
wait_for "$server" 90
grep -q '"finish_reason": *"length"' "$work/finished.txt" && grep -v '^$' "$work/finished.txt" | tail -1 | grep -q '^data: \[DONE\]$' \
    && pass "a request in flight at SIGTERM that finishes in time is answered whole" \
    || fail "a request in flight at SIGTERM that finishes in time is answered whole"
usage "serve --shutdown-timeout -1" "--shutdown-timeout must be 0 to 86400 seconds (got -1)" \
    "$keel" serve --checkpoint "$work/run" --shutdown-timeout=-1
expect_ok "generate from a prompt longer than the context" "$keel" generate --checkpoint "$work/run" --prompt "To be, or not to be" --max-tokens 1
grep -q "generate: note: prompt 1 is 19 tokens, more than the model's context (16): the model reads its last 16" "$work/err" \
    && grep -q "^16 prompt tokens in " "$work/err" \
    && pass "generate says it reads a long prompt's last tokens, and counts those it read" || fail "generate says it reads a long prompt's last tokens"
# Text is printed as it is generated: the prompt and the first tokens arrive while generation goes on (a million
# tokens take far longer; text held back until the end would not arrive before it). The reader stops the process
# once it has seen them, or after two minutes.
python3 -c '
import signal, subprocess, sys
process = subprocess.Popen([sys.argv[1], "generate", "--checkpoint", sys.argv[2], "--prompt", "To be", "--max-tokens", "1000000"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
signal.signal(signal.SIGALRM, lambda *_: (process.kill(), sys.exit(1)))
signal.alarm(120)
seen = b""
while len(seen) < 20:
    chunk = process.stdout.read1(64)
    if not chunk:
        break
    seen += chunk
running = process.poll() is None
process.kill()
process.wait()
sys.exit(0 if running and seen.startswith(b"To be") and len(seen) >= 20 else 1)' "$keel" "$work/run" \
    && pass "generate prints its text while it generates" || fail "generate prints its text while it generates"
usage "generate with top-p 0" "--top-p must be above 0 and at most 1" "$keel" generate --checkpoint "$work/run" --top-p 0
usage "generate with an unknown format" "--quantize must be one of f16, q8_0, q4_0, q4_1, q5_0, q4_k (got q5)" "$keel" generate --checkpoint "$work/run" --quantize q5
expect_error "generate in a format the model's width cannot hold" "cannot run this model in q8_0: a q8_0 matrix needs rows of a multiple of 32 values; this one has 16" \
    "$keel" generate --checkpoint "$work/run" --quantize q8_0

# keel export gguf: a Llama run as llama.cpp's file, read by gguf-py; a GPT-2 run and an unknown type refused.
expect_ok "train a tiny Llama" "$keel" train --config "$work/tiny.toml" --out "$work/llamarun" --set 'model.arch="llama"' \
    --set model.d_model=32 --set model.d_ff=64 --stop-after 2
expect_ok "export gguf q8_0" "$keel" export gguf --checkpoint "$work/llamarun" --type q8_0 --out "$work/llama.gguf"
check "gguf-py reads the file: llama metadata, 12 tensors, projections in Q8_0, norms in F32" \
    '(lambda r: r.fields["general.architecture"].contents() == "llama" and len(r.tensors) == 12 and {t.name: int(t.tensor_type) for t in r.tensors}["blk.0.attn_q.weight"] == 8 and {t.name: int(t.tensor_type) for t in r.tensors}["output_norm.weight"] == 0)(__import__("gguf").GGUFReader(sys.argv[1]))' \
    "$work/llama.gguf"
# keel quantize: a directory with the model in a llama.cpp format, which generate and eval run on its blocks — the same
# perplexity as eval --quantize of the run, whose lookups read the token table in the file's format too (q4_k holds
# this untied table in a 4-bit format: Q5_0, for rows of 32).
printf 'To be, or not to be, that is the question: whether tis nobler in the mind' >"$work/hamlet.txt"
for format in q8_0 q4_k; do
    expect_ok "quantize $format" "$keel" quantize --checkpoint "$work/llamarun" --type $format --out "$work/llama-$format"
    grep -q "bits a weight" "$work/out" && [ -s "$work/llama-$format/model.gguf" ] && pass "quantize $format wrote model.gguf and its size" \
        || fail "quantize $format wrote model.gguf and its size"
    expect_ok "eval the $format directory" "$keel" eval --checkpoint "$work/llama-$format" "$work/hamlet.txt" --seq-len 16 \
        --llama-cpp-scoring --json --attention f32
    cp "$work/out" "$work/eval-$format.json"
    expect_ok "eval --quantize $format of the run" "$keel" eval --checkpoint "$work/llamarun" "$work/hamlet.txt" --seq-len 16 \
        --llama-cpp-scoring --json --quantize $format
    # With --llama-cpp-scoring, --quantize compares the two models on llama-perplexity's positions (as its
    # --kl-divergence does): the KL figures over the predictions the quantized directory's perplexity counts.
    # (A q4_k file holds rows of 32 values in Q5_0, which the directory's eval names.)
    check "the $format directory scores as the run quantized at load, whose KL counts the same predictions" \
        '(lambda a, b: a["format"] in (sys.argv[3], "q5_0") and abs(a["perplexity"] / b["perplexity"] - 1) < 1e-9 and b["tokens"] == a["scored_tokens"] and b["kl_mean"] >= 0)(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' \
        "$work/eval-$format.json" "$work/out" $format
done
expect_ok "generate from the quantized directory" "$keel" generate --checkpoint "$work/llama-q8_0" --prompt "To be" --max-tokens 8
usage "quantize to a format that is not one" "--type must be one of f16, q8_0, q4_0, q4_1, q5_0, q4_k (got f32)" \
    "$keel" quantize --checkpoint "$work/llamarun" --type f32 --out "$work/x"
expect_error "quantize over a quantized directory" "model.gguf exists; choose another --out" \
    "$keel" quantize --checkpoint "$work/llamarun" --type q8_0 --out "$work/llama-q8_0"
expect_error "quantize into a run's own directory" "holds a run or a checkpoint; choose another --out" \
    "$keel" quantize --checkpoint "$work/llamarun" --type q8_0 --out "$work/llamarun"
[ ! -e "$work/llamarun/model.gguf" ] && pass "a refused quantize writes nothing" || fail "a refused quantize writes nothing"
# keel import gguf: Keel's own export back into a run that computes the same; a file laid out by gguf-py as llama.cpp's
# converter writes SmolLM2's (tied head, "smollm" tokenizer, mixed formats); a GGUF file run as it is.
expect_ok "export gguf f32" "$keel" export gguf --checkpoint "$work/llamarun" --type f32 --out "$work/llama-f32.gguf"
expect_ok "import gguf" "$keel" import gguf "$work/llama-f32.gguf" --out "$work/imported"
expect_ok "eval of the run" "$keel" eval --checkpoint "$work/llamarun" "$work/hamlet.txt" --seq-len 16 --json
cp "$work/out" "$work/eval-run.json"
expect_ok "eval of the imported run" "$keel" eval --checkpoint "$work/imported" "$work/hamlet.txt" --seq-len 16 --json
check "the imported run has the run's loss" 'json.load(open(sys.argv[1]))["loss"] == json.load(open(sys.argv[2]))["loss"]' \
    "$work/out" "$work/eval-run.json"
expect_ok "generate from the run" "$keel" generate --checkpoint "$work/llamarun" --prompt "To be" --max-tokens 12 --temperature 0
cp "$work/out" "$work/greedy-run.txt"
expect_ok "generate from the GGUF file" "$keel" generate --checkpoint "$work/llama-f32.gguf" --prompt "To be" --max-tokens 12 --temperature 0 \
    --attention f32
cmp -s "$work/out" "$work/greedy-run.txt" && pass "the GGUF file (fp32 attention) continues the prompt as the run does" \
    || fail "the GGUF file (fp32 attention) continues the prompt as the run does"
expect_ok "eval of the GGUF file in fp32 attention" "$keel" eval --checkpoint "$work/llama-f32.gguf" "$work/hamlet.txt" --seq-len 16 --json --attention f32
cp "$work/out" "$work/eval-gguf32.json"
expect_ok "eval of the GGUF file in fp16 attention (its default)" "$keel" eval --checkpoint "$work/llama-f32.gguf" "$work/hamlet.txt" --seq-len 16 --json
check "fp16 attention changes the perplexity a little, not much" '(lambda a, b: a != b and abs(a / b - 1) < 1e-2)(json.load(open(sys.argv[1]))["perplexity"], json.load(open(sys.argv[2]))["perplexity"])' \
    "$work/out" "$work/eval-gguf32.json"
usage "an unknown attention precision" "--attention must be f16 or f32 (got bf16)" "$keel" generate --checkpoint "$work/llama-f32.gguf" --attention bf16
# keel train --init-from: a run that starts from the imported weights (at a learning rate of 1e-30 it keeps them, to the
# bit: the same loss).
expect_ok "fine-tune the imported run" "$keel" train --config "$work/tiny.toml" --out "$work/finetuned" --set 'model.arch="llama"' \
    --set model.d_model=32 --set model.d_ff=64 --set training.steps=1 --set training.lr=1e-30 --set training.min_lr=1e-30 \
    --init-from "$work/imported"
grep -q "initialized from $work/imported/checkpoints/step_00000000" "$work/err" && grep -q "init_from" "$work/finetuned/config.toml" \
    && pass "the run says where it started, and its config keeps it" || fail "the run says where it started"
expect_ok "eval of the fine-tuned run" "$keel" eval --checkpoint "$work/finetuned" "$work/hamlet.txt" --seq-len 16 --json
check "the fine-tuned run (learning rate 1e-30) has the imported loss" 'json.load(open(sys.argv[1]))["loss"] == json.load(open(sys.argv[2]))["loss"]' \
    "$work/out" "$work/eval-run.json"
expect_error "init from a model of another shape" "holds another model than the config's .model. section (d_ff 64 there, 40 here)" \
    "$keel" train --config "$work/tiny.toml" --out "$work/finetuned-2" --set 'model.arch="llama"' --set model.d_model=32 \
    --set model.d_ff=40 --init-from "$work/imported"
expect_ok "a SmolLM2-like GGUF file by gguf-py" python3 "$here/../Reference/gguf_files.py" model "$work/tiny.gguf" "$work/tiny-expected.safetensors"
expect_ok "import it" "$keel" import gguf "$work/tiny.gguf" --out "$work/tiny-imported"
grep -q "head tied to the embedding" "$work/out" && grep -q "pre-tokenizer smollm" "$work/out" \
    && [ -s "$work/tiny-imported/checkpoints/step_00000000/tokenizer.json" ] \
    && pass "the import ties the head and keeps the tokenizer as tokenizer.json" || fail "the import ties the head and keeps the tokenizer"
expect_ok "eval the GGUF file in its own formats" "$keel" eval --checkpoint "$work/tiny.gguf" "$work/hamlet.txt" --seq-len 16 --json
check "a GGUF file's eval says the model's formats" '(lambda r: r["format"] == "gguf" and r["scored_tokens"] > 0)(json.load(open(sys.argv[1])))' "$work/out"
expect_ok "generate from the imported run" "$keel" generate --checkpoint "$work/tiny-imported" --prompt "In 1599 the" --max-tokens 4
# Every engine gives the same bits (KEEL_QDOT_ENGINE picks one; one this CPU lacks leaves the best): the file's
# Q8_0, Q4_K, Q4_1, Q4_0 and F16 products continue a prompt identically on each, and score the text identically but
# for the F16 prompt products, which run through sgemm (another order) without AVX-512: within 1e-4 there.
for engine in scalar avx2 avx-vnni avx512-vnni; do
    KEEL_QDOT_ENGINE=$engine "$keel" eval --checkpoint "$work/tiny.gguf" "$work/hamlet.txt" --seq-len 16 --json \
        >"$work/engine-$engine.json" 2>/dev/null
    KEEL_QDOT_ENGINE=$engine "$keel" generate --checkpoint "$work/tiny.gguf" --prompt "In 1599 the" --max-tokens 12 \
        --temperature 0 >"$work/engine-$engine.txt" 2>/dev/null
done
check "greedy text is the same, and eval within 1e-4, on every quantized-product engine" \
    '(lambda p: min(p) > 0 and max(p) / min(p) - 1 < 1e-4)([json.load(open(f))["perplexity"] for f in sys.argv[1:5]]) and len({open(f, "rb").read() for f in sys.argv[5:]}) == 1' \
    "$work"/engine-{scalar,avx2,avx-vnni,avx512-vnni}.json "$work"/engine-{scalar,avx2,avx-vnni,avx512-vnni}.txt
KEEL_QDOT_ENGINE=avx9 "$keel" generate --checkpoint "$work/tiny.gguf" --prompt "In 1599 the" --max-tokens 12 \
    --temperature 0 >"$work/engine-bad.txt" 2>"$work/engine-bad.err"
grep -q "warning: KEEL_QDOT_ENGINE=avx9 is not one of scalar, avx2, avx-vnni, avx512-vnni; using" "$work/engine-bad.err" \
    && cmp -s "$work/engine-bad.txt" "$work/engine-scalar.txt" \
    && pass "an engine variable that names no engine is warned about, and the fastest runs" \
    || fail "an engine variable that names no engine: $(cat "$work/engine-bad.err")"
# --warmup runs the prompt once untimed first: the same text.
"$keel" generate --checkpoint "$work/tiny.gguf" --prompt "In 1599 the" --max-tokens 12 --temperature 0 --warmup \
    >"$work/warmup.txt" 2>/dev/null
cmp -s "$work/warmup.txt" "$work/engine-scalar.txt" && pass "generate --warmup gives the same text" || fail "generate --warmup gives the same text"
# A model whose end of sequence is <|endoftext|> and whose greedy choice after any text is <|im_end|>: generation stops
# at <|im_end|>, as llama.cpp stops at the end-of-turn tokens it finds in a vocabulary, and so does its import.
expect_ok "a GGUF file that answers <|im_end|> but ends sequences with <|endoftext|>" \
    python3 "$here/../Reference/gguf_files.py" ends-turn "$work/ends-turn.gguf"
expect_ok "import it" "$keel" import gguf "$work/ends-turn.gguf" --out "$work/ends-turn-imported"
for model in "$work/ends-turn.gguf" "$work/ends-turn-imported"; do
    "$keel" generate --checkpoint "$model" --prompt "In 1599 the" --max-tokens 4 --temperature 0 --json \
        >"$work/ends-turn.json" 2>/dev/null
    check "generation from $(basename "$model") stops at <|im_end|>, an end of turn but not its end of sequence" \
        '(lambda r: r["text"] == "" and r["stop"] == "string")(json.load(open(sys.argv[1])))' "$work/ends-turn.json"
done
start_server "$work/ends-turn.gguf"
post completions '{"prompt": "In 1599 the", "max_tokens": 4, "temperature": 0}'
check "serve's completion from it stops there too" \
    '(lambda c: c["text"] == "" and c["finish_reason"] == "stop")(json.load(open(sys.argv[1]))["choices"][0])' "$work/response.json"
stop_server
# One whose greedy choice is Llama 3's <|eot_id|>, an end of turn that is neither its end of sequence nor ChatML's:
# a chat reply stops there in serve as in generate --chat.
expect_ok "a GGUF file that answers <|eot_id|>" python3 "$here/../Reference/gguf_files.py" ends-turn "$work/eot-id.gguf" --eot-id
"$keel" generate --checkpoint "$work/eot-id.gguf" --chat --prompt "Hello" --max-tokens 4 --temperature 0 --json \
    >"$work/eot-id.json" 2>/dev/null
check "generate --chat stops at <|eot_id|>" '(lambda r: r["text"] == "" and r["stop"] == "string")(json.load(open(sys.argv[1])))' \
    "$work/eot-id.json"
start_server "$work/eot-id.gguf"
post chat/completions '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}'
check "serve's chat reply stops at <|eot_id|> too" \
    '(lambda c: c["message"]["content"] == "" and c["finish_reason"] == "stop")(json.load(open(sys.argv[1]))["choices"][0])' \
    "$work/response.json"
stop_server
# A file that asks for BOS (tokenizer.ggml.add_bos_token, as Llama 3's): generate puts it before the prompt, and its
# import keeps asking.
expect_ok "a GGUF file that asks for BOS" python3 "$here/../Reference/gguf_files.py" model "$work/tiny-bos.gguf" "$work/tiny-bos.safetensors" --add-bos
for file in tiny tiny-bos; do
    "$keel" generate --checkpoint "$work/$file.gguf" --prompt "In 1599 the" --max-tokens 1 2>"$work/$file.err" >/dev/null
done
expect_ok "import the file that asks for BOS" "$keel" import gguf "$work/tiny-bos.gguf" --out "$work/tiny-bos-run"
check "the import says its texts start with the file's BOS" \
    '"note: texts start with BOS token %d " % (lambda f: int(f.parts[f.data[0]][0]))(__import__("gguf").GGUFReader(sys.argv[2]).fields["tokenizer.ggml.bos_token_id"]) in open(sys.argv[1]).read()' \
    "$work/out" "$work/tiny-bos.gguf"
# Its tokenizer.json says so to Hugging Face's tokenizers too: the post-processor puts the file's BOS first, and only there.
check "the import's tokenizer.json puts the file's BOS first for Hugging Face's tokenizers, the other import's nothing" \
    '(lambda bos, first: first(sys.argv[1]) == bos != first(sys.argv[2]))((lambda f: int(f.parts[f.data[0]][0]))(__import__("gguf").GGUFReader(sys.argv[3]).fields["tokenizer.ggml.bos_token_id"]), lambda path: __import__("tokenizers").Tokenizer.from_file(path).encode("In 1599 the").ids[0])' \
    "$work/tiny-bos-run/checkpoints/step_00000000/tokenizer.json" "$work/tiny-imported/checkpoints/step_00000000/tokenizer.json" \
    "$work/tiny-bos.gguf"
"$keel" generate --checkpoint "$work/tiny-bos-run" --prompt "In 1599 the" --max-tokens 1 2>"$work/tiny-bos-run.err" >/dev/null
# The import says so in its tokenizer.json alone (its tokenizer_config.json has no add_bos_token): export gguf writes
# the BOS and add_bos_token back, and sample reads the prompt after it as generate does (greedy, the same text, which
# sample prints with U+FFFD for bytes that are not UTF-8; the import of the file without BOS, the same weights,
# continues otherwise).
python3 -c 'import json, sys; assert "add_bos_token" not in json.load(open(sys.argv[1]))' \
    "$work/tiny-bos-run/checkpoints/step_00000000/tokenizer_config.json" && pass "the import keeps no add_bos_token" \
    || fail "the import keeps no add_bos_token"
expect_ok "export gguf of the import that asks for BOS" "$keel" export gguf --checkpoint "$work/tiny-bos-run" --type f32 \
    --out "$work/tiny-bos-again.gguf"
check "the exported file asks for the original's BOS" \
    '(lambda a, b: [a(f) for f in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id")] == [b(f) for f in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id")] and a("tokenizer.ggml.add_bos_token"))(*[(lambda r: lambda name: r.fields[name].parts[r.fields[name].data[0]][0].item())(__import__("gguf").GGUFReader(f)) for f in sys.argv[1:3]])' \
    "$work/tiny-bos-again.gguf" "$work/tiny-bos.gguf"
# And export hf names that BOS and the file's EOS (<|im_end|>) in config.json (it named the end-of-text token,
# <|endoftext|>, for both); the import without BOS names its EOS for both, as GPT-2's config does.
expect_ok "export hf of the import that asks for BOS" "$keel" export hf --checkpoint "$work/tiny-bos-run" --out "$work/tiny-bos-hf"
expect_ok "export hf of the import without BOS" "$keel" export hf --checkpoint "$work/tiny-imported" --out "$work/tiny-hf"
check "config.json names the file's BOS and EOS, or its EOS for both without a BOS" \
    '(lambda field, a, b: [a["bos_token_id"], a["eos_token_id"]] == [field("bos"), field("eos")] and b["bos_token_id"] == b["eos_token_id"] == field("eos"))(lambda k: int((lambda f: f.parts[f.data[0]][0])(__import__("gguf").GGUFReader(sys.argv[1]).fields["tokenizer.ggml.%s_token_id" % k])), *[json.load(open(f)) for f in sys.argv[2:4]])' \
    "$work/tiny-bos.gguf" "$work/tiny-bos-hf/config.json" "$work/tiny-hf/config.json"
"$keel" generate --checkpoint "$work/tiny-bos-run" --prompt "In 1599 the" --max-tokens 8 --temperature 0 >"$work/bos-generated.txt" 2>/dev/null
"$keel" sample --checkpoint "$work/tiny-bos-run" --prompt "In 1599 the" --tokens 8 --temperature 0 >"$work/bos-sampled.txt" 2>/dev/null
"$keel" sample --checkpoint "$work/tiny-imported" --prompt "In 1599 the" --tokens 8 --temperature 0 >"$work/no-bos-sampled.txt" 2>/dev/null
check "sample continues a prompt after BOS, as generate does" \
    '(lambda g, s, n: g and g == s != n)(*[open(f, "rb").read().decode("utf-8", "replace") for f in sys.argv[1:4]])' \
    "$work/bos-generated.txt" "$work/bos-sampled.txt" \
    "$work/no-bos-sampled.txt"
check "BOS goes before the prompt of the file, and of its import, that ask for it" \
    '(lambda n: n[1] == n[0] + 1 and n[2] == n[1])([int(open(f).read().split(" prompt tokens")[0].split()[-1]) for f in sys.argv[1:]])' \
    "$work/tiny.err" "$work/tiny-bos.err" "$work/tiny-bos-run.err"
# eval --llama-cpp-scoring replaces each window's first token by BOS for such a model, as llama-perplexity does: the
# two files (the same weights) then score differently, and so do the two imports.
for model in tiny.gguf tiny-bos.gguf tiny-imported tiny-bos-run; do
    "$keel" eval --checkpoint "$work/$model" "$work/hamlet.txt" --seq-len 16 --llama-cpp-scoring --json >"$work/$model.json" 2>"$work/$model.eval.err"
done
check "eval --llama-cpp-scoring puts BOS first in each window of a file, and of an import, that ask for it" \
    '(lambda p: p[0] != p[1] and p[2] != p[3])([json.load(open(f))["perplexity"] for f in sys.argv[1:5]]) and all("replaced by it" in open(f).read() for f in sys.argv[5:])' \
    "$work/tiny.gguf.json" "$work/tiny-bos.gguf.json" "$work/tiny-imported.json" "$work/tiny-bos-run.json" \
    "$work/tiny-bos.gguf.eval.err" "$work/tiny-bos-run.eval.err"
# Pretraining text reads as Hugging Face's tokenizer(text) and torchtitan read it: a document starts with the token the
# tokenizer puts before every text (here after llm.c's end-of-text), in prepared shards and in plain eval alike.
for model in tiny-bos-run tiny-imported; do
    expect_ok "prepare text with the tokenizer of $model" "$keel" data prepare --input "$work/hamlet.txt" --val-fraction 0 \
        --tokenizer "$work/$model/checkpoints/step_00000000/tokenizer.json" --out "$work/$model-data"
    grep -q "^note: no document was held out (--val-fraction 0.0 of [0-9]*); keel train needs a validation split" "$work/err" \
        && pass "a dataset without validation documents is said to be one at once" || fail "a dataset without validation documents is said to be one"
done
for model in tiny-bos-run tiny-imported tiny-bos.gguf; do
    "$keel" eval --checkpoint "$work/$model" "$work/hamlet.txt" --seq-len 16 --json >"$work/$model.plain.json" 2>"$work/$model.plain.err"
done
check "prepared documents start with end-of-text, then the text start of the tokenizer that has one" \
    '(lambda bos, a, b: a[:2] == [a[0], bos] and b[0] == a[0] and b[1] != bos and a[2:] == b[1:-1])(*[(lambda f: int(f.parts[f.data[0]][0]))(__import__("gguf").GGUFReader(sys.argv[1]).fields["tokenizer.ggml.bos_token_id"])] + [(lambda b: list(__import__("struct").unpack_from("<%d%s" % (min(40, (len(b) - 1024) // 2), "H"), b, 1024)))(open(f, "rb").read()) for f in sys.argv[2:4]])' \
    "$work/tiny-bos.gguf" "$work/tiny-bos-run-data/train_000000.bin" "$work/tiny-imported-data/train_000000.bin"
check "plain eval reads each document after the text start, and a GGUF file's says so" \
    '(lambda p: p[0] != p[1])([json.load(open(f))["perplexity"] for f in sys.argv[1:3]]) and "note: the model expects token 1 before every text; each document starts with it" in open(sys.argv[3]).read()' \
    "$work/tiny-bos-run.plain.json" "$work/tiny-imported.plain.json" "$work/tiny-bos.gguf.plain.err"
{ cat "$work/tiny-imported/config.toml"; printf '[data]\npaths = ["%s"]\n[training]\nsteps = 1\nbatch_size = 2\nseq_len = 16\n' "$work/corpus"; } >"$work/smol.toml"
expect_error "init from a model whose tokenizer is not the data's" "the data's tokenizer (byte) is not the checkpoint's" \
    "$keel" train --config "$work/smol.toml" --out "$work/smol-run" --init-from "$work/tiny-imported"
expect_ok "fine-tune the import with its own tokenizer" "$keel" train --config "$work/smol.toml" --out "$work/smol-run" \
    --init-from "$work/tiny-imported" --set "data.tokenizer=\"$work/tiny-imported/checkpoints/step_00000000/tokenizer.json\""
[ -s "$(ls -d "$work"/smol-run/checkpoints/step_* | tail -1)/tokenizer_config.json" ] \
    && pass "the fine-tuned checkpoints keep the import's tokenizer_config.json (EOS, chat template)" \
    || fail "the fine-tuned checkpoints keep the import's tokenizer_config.json"
# keel sft: the import fine-tuned on conversations (its own chat template), and a Keel-trained run (ChatML); the
# loss counts what the assistant writes, and falls.
python3 -c '
import json, random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for _ in range(200):
        a, b = random.randint(0, 9), random.randint(0, 9)
        f.write(json.dumps({"messages": [{"role": "user", "content": f"{a}+{b}"}, {"role": "assistant", "content": str(a + b)}]}) + "\n")
' "$work/chat.jsonl"
sft_settings=(--set training.steps=20 --set training.seq_len=96 --set training.batch_size=4 --set training.lr=3e-3 --set training.eval_every=20)
expect_ok "sft of the import on conversations" "$keel" sft --init-from "$work/tiny-imported" --data "$work/chat.jsonl" \
    --out "$work/sft-run" "${sft_settings[@]}"
grep -q "the tokenizer's chat template); [0-9]* training and [0-9]* validation targets the loss counts" "$work/err" \
    && pass "sft renders the import's chat template and counts the assistant's tokens" || fail "sft renders the import's chat template"
check "sft lowers the validation loss on the assistant's tokens to under half" \
    '(lambda v: len(v) == 2 and v[-1] < 0.5 * v[0])([json.loads(l)["val_loss"] for l in open(sys.argv[1]) if "val_loss" in l])' \
    "$work/sft-run/metrics.jsonl"
# A Keel-trained run (byte tokenizer, 16 positions): prompt-completion pairs, the completion and EOS trained on.
python3 -c 'import json, sys; [print(json.dumps({"prompt": f"{a}+{a}=", "completion": str(2 * a)})) for a in range(40)]' >"$work/pairs.jsonl"
# Pre-training with document masking: on documents shorter than a window, every window holds several, and the
# same run without masking logs other losses from step 1 on (the weights are the same then).
mkdir -p "$work/shortdocs"
for i in $(seq 1 40); do printf 'Doc %d: to be or not.' "$i" >"$work/shortdocs/d$i.txt"; done
for masking in true false; do
    expect_ok "pre-training with data.document_masking = $masking" "$keel" train --config "$work/tiny.toml" \
        --out "$work/docmask-$masking" --set "data.paths=[\"$work/shortdocs\"]" --set data.document_masking=$masking \
        --set training.steps=2
done
check "document masking changes what a window's later documents see" \
    '(lambda a, b: a[0] != b[0])(*[[json.loads(l)["loss"] for l in open(f) if "\"loss\"" in l] for f in sys.argv[1:3]])' \
    "$work/docmask-true/metrics.jsonl" "$work/docmask-false/metrics.jsonl"
expect_ok "sft --resume goes on from the run's checkpoint" "$keel" sft --resume --out "$work/sft-run" --set training.steps=22
[ -d "$work/sft-run/checkpoints/step_00000022" ] && pass "the resumed sft wrote step 22" || fail "the resumed sft wrote step 22"
expect_ok "sft of a Keel-trained run on prompt-completion pairs" "$keel" sft --init-from "$work/llamarun" --data "$work/pairs.jsonl" \
    --out "$work/sft-pairs" "${sft_settings[@]}" --set training.steps=2 --set training.seq_len=16
grep -q "(Keel's ChatML); [0-9]* training and [0-9]* validation targets" "$work/err" \
    && pass "a run without a chat template takes Keel's ChatML" || fail "a run without a chat template takes Keel's ChatML"
sed 's/$/\r/' "$work/chat.jsonl" >"$work/chat-crlf.jsonl"
expect_ok "sft on a file with Windows line endings" "$keel" sft --init-from "$work/tiny-imported" --data "$work/chat-crlf.jsonl" \
    --out "$work/sft-crlf" "${sft_settings[@]}" --set training.steps=1
grep -q "180 + 20 examples" "$work/err" && pass "every CRLF line is an example" || fail "every CRLF line is an example"
{ head -2 "$work/chat.jsonl"; echo '{"messages": [{"role": "user"'; } >"$work/bad-chat.jsonl"
expect_error "sft on a malformed line" "bad-chat.jsonl:3: JSON: unexpected end" \
    "$keel" sft --init-from "$work/tiny-imported" --data "$work/bad-chat.jsonl" --out "$work/sft-bad" "${sft_settings[@]}"
[ ! -e "$work/sft-bad/checkpoints" ] && pass "a refused sft writes no checkpoint" || fail "a refused sft writes no checkpoint"
usage "sft without data" "give the chat data with --data" "$keel" sft --init-from "$work/tiny-imported" --out "$work/sft-none"
expect_error "sft whose examples are cut before the assistant speaks" "no token the loss counts" \
    "$keel" sft --init-from "$work/tiny-imported" --data "$work/chat.jsonl" --out "$work/sft-short" "${sft_settings[@]}" --set training.seq_len=16
# Held-out conversations (every tenth) cut before the assistant speaks would log a validation loss of 0: refused.
python3 -c 'import json, sys
for i in range(20):
    question = "Tell me " + ("at great length " * 20 if i % 10 == 9 else "") + "what %d is." % i
    print(json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "It is %d." % i}]}))' >"$work/long-held.jsonl"
expect_error "sft whose held-out examples are cut before the assistant speaks" "the validation split holds no token the loss counts" \
    "$keel" sft --init-from "$work/tiny-imported" --data "$work/long-held.jsonl" --out "$work/sft-long-held" "${sft_settings[@]}" \
    --set training.batch_size=2
# keel dpo against TRL's DPOTrainer: the same tiny Llama (transformers wrote it), pairs and settings give TRL's losses,
# rewards, reward accuracies and log-probabilities within 1e-4 for 10 steps (Tests/Reference/dpo_trl, written by
# scripts/hf_check/make_dpo_fixture.py with TRL 1.16), as plain text, as conversations and with IPO's loss.
dpo_fixture="$here/../Reference/dpo_trl"
expect_ok "import the Llama that TRL optimised" "$keel" import hf "$dpo_fixture/model" --out "$work/dpo-base"
dpo_settings=(--set training.batch_size=2 --set training.grad_accum=2 --set training.steps=10 --set training.seq_len=63)
for case in text:text:sigmoid:0.1:1e-3 chat:chat:sigmoid:0.1:1e-3 ipo:text:ipo:0.5:1e-4; do
    IFS=: read -r name pairs loss beta lr <<<"$case"
    expect_ok "dpo ($name pairs, $loss loss) runs" "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_$pairs.jsonl" \
        --out "$work/dpo-$name" --loss "$loss" --beta "$beta" --no-shuffle "${dpo_settings[@]}" --set data.val_fraction=0 \
        --set training.lr="$lr" --set training.min_lr="$lr" --set checkpoint.every=5
    expect_ok "dpo ($name pairs, $loss loss) gives TRL's figures for 10 steps" \
        python3 "$here/../Reference/compare_dpo.py" "$dpo_fixture/trl_$name.json" "$work/dpo-$name/metrics.jsonl"
done
# --resume, as after a crash just after step 5's checkpoint: steps 6 to 10 as the uninterrupted run logged them.
same_steps='(lambda a, b, k: [r[k] for r in a if k in r] == [r[k] for r in b if k in r])(*[[json.loads(l) for l in open(f)] for f in sys.argv[1:3]], sys.argv[3])'
cp -r "$work/dpo-text" "$work/dpo-resumed" && rm -rf "$work/dpo-resumed/checkpoints/step_00000010"
expect_ok "dpo --resume from step 5" "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" \
    --out "$work/dpo-resumed" --no-shuffle "${dpo_settings[@]}" --set data.val_fraction=0 --set training.lr=1e-3 \
    --set training.min_lr=1e-3 --set checkpoint.every=5 --resume
grep -q "resuming after step 5 from" "$work/err" && pass "dpo --resume says where it goes on from" || fail "dpo --resume says where it goes on from"
check "the resumed DPO run logs the uninterrupted run's losses bit for bit" "$same_steps" \
    "$work/dpo-text/metrics.jsonl" "$work/dpo-resumed/metrics.jsonl" loss
# Resumed without repeating its settings, the run goes on with those in its config.toml: the same losses again.
cp -r "$work/dpo-text" "$work/dpo-resumed-saved" && rm -rf "$work/dpo-resumed-saved/checkpoints/step_00000010"
expect_ok "dpo --resume with the run's saved settings" "$keel" dpo --init-from "$work/dpo-base" \
    --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-resumed-saved" --no-shuffle --resume
check "it logs the uninterrupted run's losses bit for bit" "$same_steps" \
    "$work/dpo-text/metrics.jsonl" "$work/dpo-resumed-saved/metrics.jsonl" loss
expect_error "dpo --resume of a directory without a checkpoint" "holds no valid checkpoint" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-nothing" --resume
# A resume with other options or other data would start another run from this one's middle, on reference values that
# belong to the first: refused with status 3 (keel launch does not restart it), naming what differs, nothing written.
cp -r "$work/dpo-text" "$work/dpo-other" && rm -rf "$work/dpo-other/checkpoints/step_00000010"
sed 's/the king/a king/' "$dpo_fixture/pairs_text.jsonl" >"$work/pairs-changed.jsonl"
fingerprint() { (cd "$1" && find . -type f | sort | xargs md5sum | md5sum); }
before=$(fingerprint "$work/dpo-other")
# The reference log-probabilities belong to the run's sequence length too (pairs that fit both read other tokens); which
# pairs a step takes, to its seed, batch size and accumulation (another seed went on reading pairs in another order).
for other in "--beta 0.2" "--data $work/pairs-changed.jsonl" "--set training.seq_len=80" "--set training.seed=99"; do
    data=(--data "$dpo_fixture/pairs_text.jsonl")
    [ "${other%% *}" = --data ] && data=()
    # shellcheck disable=SC2086
    "$keel" dpo --init-from "$work/dpo-base" "${data[@]}" --out "$work/dpo-other" --no-shuffle $other --resume >"$work/out" 2>"$work/err"
    status=$?
    wanted="--beta 0.2 (the checkpoint's: 0.1)"
    [ "${other%% *}" = --data ] && wanted="the data, whose tokens differ from those the checkpoint was trained on"
    [ "$other" = "--set training.seq_len=80" ] && wanted=".*training.seq_len = 80 (the checkpoint's: 63)"
    [ "$other" = "--set training.seed=99" ] && wanted=".*training.seed = 99 (the checkpoint's: 1337)"
    if [ $status -eq 3 ] && grep -q "^Error: --resume: this run differs from the one that wrote .*step_00000005: $wanted" "$work/err" \
        && [ "$(fingerprint "$work/dpo-other")" = "$before" ]; then
        pass "dpo --resume with $other is refused, naming it, with status 3, nothing written"
    else
        fail "dpo --resume with $other is refused, naming it, with status 3, nothing written (exit $status)"
    fi
done
expect_ok "generate from the DPO run's checkpoint" "$keel" generate --checkpoint "$work/dpo-text" --prompt "What is the sea?" \
    --max-tokens 4 --temperature 0
# Held-out pairs (every 10th): the policy starts as the reference, so their loss is log 2 exactly at step 0.
expect_ok "dpo with held-out pairs, in an order of its own" "$keel" dpo --init-from "$work/dpo-base" \
    --data "$dpo_fixture/pairs_chat.jsonl" --out "$work/dpo-val" "${dpo_settings[@]}" --set training.steps=3 --set training.lr=1e-3
grep -q "22 + 2 pairs" "$work/err" && pass "dpo holds every 10th pair out" || fail "dpo holds every 10th pair out"
check "the held-out loss is log 2 before the first step, and is measured again after the last" \
    '(lambda v: [s for s, _ in v] == [0, 3] and abs(v[0][1] - __import__("math").log(2)) < 1e-12)([(r["step"], r["val_loss"]) for r in map(json.loads, open(sys.argv[1])) if "val_loss" in r])' \
    "$work/dpo-val/metrics.jsonl"
check "shuffled pairs are not the file's order" \
    '(lambda a, b: a["logps_chosen"] != b["logps_chosen"])(*[next(json.loads(l) for l in open(f) if "\"loss\"" in l) for f in sys.argv[1:3]])' \
    "$work/dpo-val/metrics.jsonl" "$work/dpo-chat/metrics.jsonl"
{ head -1 "$dpo_fixture/pairs_text.jsonl"; echo '{"prompt": "Who?", "chosen": " Me."}'; } >"$work/bad-pairs.jsonl"
expect_error "dpo on a pair without a rejected response" 'bad-pairs.jsonl:2: a preference pair needs "chosen" and "rejected"' \
    "$keel" dpo --init-from "$work/dpo-base" --data "$work/bad-pairs.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}"
[ ! -e "$work/dpo-bad" ] && pass "a refused dpo writes nothing" || fail "a refused dpo writes nothing"
# A layout fine-tuning does not run (one whole replica per process) is refused, not ignored.
expect_error "dpo with tensor parallelism and ZeRO-3" "config: parallel.tp = 2, distributed.zero_stage = 3: fine-tuning runs data-parallel only" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" \
    --set parallel.tp=2 --set distributed.zero_stage=3
expect_error "reward train with two replicas asked of one process" "config: parallel.dp = 2, and the job has 1 process" \
    "$keel" reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" \
    --set parallel.dp=2
[ ! -e "$work/dpo-bad" ] && pass "a refused layout writes nothing" || fail "a refused layout writes nothing"
# A fine-tuning run that diverges says so as `keel train` does, naming its last checkpoint, and exits with status 3 (so
# that `keel launch --max-restarts` does not restart it).
"$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-nan" "${dpo_settings[@]}" \
    --set training.steps=3 --set training.lr=1e30 --set training.weight_decay=0.0 --set training.min_lr=1e30 --set training.grad_clip=0 \
    --set checkpoint.every=1 >"$work/out" 2>"$work/err"
status=$?
[ $status -eq 3 ] && grep -q "^Error: training diverged: loss is NaN at step 2; the last good checkpoint is $work/dpo-nan/checkpoints/step_00000001$" "$work/err" \
    && pass "a diverged dpo names the step and its last checkpoint, and exits with status 3" \
    || fail "a diverged dpo names the step and its last checkpoint, and exits with status 3 (exit $status: $(tail -1 "$work/err"))"
echo '{"prompt": "Who?", "chosen": [{"role": "assistant", "content": "Me."}], "rejected": " You."}' >"$work/mixed-pairs.jsonl"
expect_error "dpo on a pair mixing text and messages" "must all be strings or all be lists of messages" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$work/mixed-pairs.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}"
expect_error "dpo into a run directory that holds a run" "already holds a run" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-text" "${dpo_settings[@]}"
expect_error "dpo whose prompts fill the window" "every pair is dropped: the prompt fills training.seq_len + 1 (4) tokens" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" --set training.seq_len=3
expect_error "ipo with label smoothing" "label smoothing applies to the sigmoid (DPO) loss only" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" --loss ipo --label-smoothing 0.1
printf '[training]  # what this run changes\nlr = 2e-4\nmin_lr = 2e-4\n' >"$work/dpo.toml"
expect_ok "dpo with a config file" "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" \
    --out "$work/dpo-config" --config "$work/dpo.toml" "${dpo_settings[@]}" --set training.steps=1 --set data.val_fraction=0
check "the config file's learning rate holds, not TRL's default" \
    '[json.loads(l)["lr"] for l in open(sys.argv[1]) if "\"loss\"" in l] == [2e-4]' "$work/dpo-config/metrics.jsonl"
expect_error "dpo refuses to change the run's model" "model.max_seq_len: the model is the run's" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" \
    --set model.max_seq_len=4096
expect_error "dpo with fewer pairs than a step takes" "22 training pairs are fewer than one step's 60" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" \
    --set training.batch_size=30
usage "dpo with an unknown loss" "--loss must be one of sigmoid, ipo" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" --loss hinge
# A strength that is not a number would make every loss NaN and stop the run as diverged after its first step.
expect_error "dpo with an infinite beta" "--beta must be a positive number (got inf)" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_text.jsonl" --out "$work/dpo-bad" "${dpo_settings[@]}" --beta inf
# A stop signal during the reference log-probabilities (a pass over all the pairs: hours for a large set) ends the run
# at once, before its first step, saying that nothing was saved (it waited for the whole pass and a step).
python3 -c 'import sys; lines = open(sys.argv[1]).read().splitlines(); open(sys.argv[2], "w").write("\n".join(lines * 100) + "\n")' \
    "$dpo_fixture/pairs_text.jsonl" "$work/pairs-many.jsonl"
"$keel" dpo --init-from "$work/dpo-base" --data "$work/pairs-many.jsonl" --out "$work/dpo-stopped" "${dpo_settings[@]}" \
    >"$work/out" 2>"$work/err" &
dpo=$!
for _ in $(seq 1 300); do grep -q "^DPO from" "$work/err" && break; sleep 0.1; done
kill -TERM $dpo
wait $dpo
status=$?
[ $status -eq 75 ] && [ ! -e "$work/dpo-stopped/checkpoints" ] \
    && grep -q "^stopped by SIGTERM during the reference log-probabilities ([0-9]* of 2400 pairs), before the first step: nothing was saved; run the command again$" "$work/out" \
    && pass "a stop signal during dpo's reference pass ends it there" \
    || fail "a stop signal during dpo's reference pass ends it there (exit $status: $(cat "$work/out"))"
usage "dpo with --resume and --resume-if-any" "give --resume or --resume-if-any, not both" \
    "$keel" dpo --init-from "$work/dpo-base" --data "$work/pairs-many.jsonl" --out "$work/dpo-x" --resume --resume-if-any
# keel reward: two reward models (other seeds) on the conversations above learn to prefer the chosen answers, are
# saved with their head, and are measured and compared on the pairs; a run without a head is refused.
reward_settings=(--set training.batch_size=4 --set training.steps=12 --set training.seq_len=64 --set training.lr=1e-3)
for seed in 1 2; do
    expect_ok "reward train (seed $seed)" "$keel" reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" \
        --out "$work/reward-$seed" "${reward_settings[@]}" --set training.seed=$seed --set checkpoint.every=6
done
cp -r "$work/reward-1" "$work/reward-resumed" && rm -rf "$work/reward-resumed/checkpoints/step_00000012"
expect_ok "reward train --resume from step 6" "$keel" reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" \
    --out "$work/reward-resumed" "${reward_settings[@]}" --set training.seed=1 --set checkpoint.every=6 --resume
check "the resumed reward model logs the uninterrupted run's losses bit for bit" "$same_steps" \
    "$work/reward-1/metrics.jsonl" "$work/reward-resumed/metrics.jsonl" loss
check "the reward model's held-out loss falls and its last steps rank every pair right" \
    '(lambda r: (lambda v, a: v[-1] < v[0] and a[-1] == 1.0)([x["val_loss"] for x in r if "val_loss" in x], [x["accuracy"] for x in r if "accuracy" in x]))([json.loads(l) for l in open(sys.argv[1])])' \
    "$work/reward-1/metrics.jsonl"
[ -s "$work/reward-1/checkpoints/step_00000012/reward_head.safetensors" ] && pass "the reward model's checkpoint holds its head" \
    || fail "the reward model's checkpoint holds its head"
expect_ok "reward eval of two models" "$keel" reward eval --model "$work/reward-1" --model "$work/reward-2" \
    --data "$dpo_fixture/pairs_chat.jsonl" --save "$work/reward.json"
grep -q "^$work/reward-1 vs $work/reward-2: agree on" "$work/out" && grep -q "^ensemble of 2: accuracy" "$work/out" \
    && pass "reward eval compares the two and reports their ensemble" || fail "reward eval compares the two and reports their ensemble"
check "the report as JSON: 24 pairs, both models right on most, one agreement" \
    '(lambda r: r["pairs"] == 24 and all(m["accuracy"] > 0.8 for m in r["models"]) and len(r["agreements"]) == 1)(json.load(open(sys.argv[1])))' \
    "$work/reward.json"
expect_error "reward eval of a run without a reward head" "is not a reward model" \
    "$keel" reward eval --model "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl"
expect_error "reward train on a pair without a rejected response" 'bad-pairs.jsonl:2: a preference pair needs' \
    "$keel" reward train --init-from "$work/dpo-base" --data "$work/bad-pairs.jsonl" --out "$work/reward-bad" "${reward_settings[@]}"
expect_error "reward train with a negative centring coefficient" "--centering must be a number that is not negative (got -1.0)" \
    "$keel" reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" --out "$work/reward-bad" "${reward_settings[@]}" \
    --centering=-1
expect_error "reward train with an infinite centring coefficient" "--centering must be a number that is not negative (got inf)" \
    "$keel" reward train --init-from "$work/dpo-base" --data "$dpo_fixture/pairs_chat.jsonl" --out "$work/reward-bad" "${reward_settings[@]}" \
    --centering inf
expect_error "reward eval beyond the models' context" "--seq-len 0 must be within 1...128" \
    "$keel" reward eval --model "$work/reward-1" --data "$dpo_fixture/pairs_chat.jsonl" --seq-len 0
expect_error "reward eval whose --seq-len drops every pair names it" "every pair is dropped: a sequence is longer than --seq-len (2)" \
    "$keel" reward eval --model "$work/reward-1" --data "$dpo_fixture/pairs_chat.jsonl" --seq-len 2
usage "reward eval without a model" "give a reward model with --model" "$keel" reward eval --data "$dpo_fixture/pairs_chat.jsonl"
# keel grpo: the tiny Llama learns, from its own samples and a reward a program checks, to answer "7" (its random
# weights draw it about once in 400 samples): the mean reward rises from 0 and the held-out prompts' greedy answers
# become right.
python3 -c 'import json; [print(json.dumps({"prompt": f"Say a lucky number {i}:", "answer": "7"})) for i in range(64)]' >"$work/lucky.jsonl"
expect_ok "grpo on a task with a checked answer" "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" \
    --out "$work/grpo-run" --max-new-tokens 1 --group-size 16 --set training.batch_size=4 --set training.steps=20 \
    --set training.seq_len=32 --set training.lr=3e-3 --set training.min_lr=3e-3 --set data.val_fraction=0.125 --set checkpoint.every=10
check "grpo's reward rises from 0 to over 0.3, and the held-out greedy reward from 0 to 1" \
    '(lambda r: (lambda s, v: s[0] == 0 and s[-1] > 0.3 and v == [0, 1])([x["reward"] for x in r if "reward" in x], [x["val_reward"] for x in r if "val_reward" in x]))([json.loads(l) for l in open(sys.argv[1])])' \
    "$work/grpo-run/metrics.jsonl"
cp -r "$work/grpo-run" "$work/grpo-resumed" && rm -rf "$work/grpo-resumed/checkpoints/step_00000020"
expect_ok "grpo --resume from step 10" "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" \
    --out "$work/grpo-resumed" --max-new-tokens 1 --group-size 16 --set training.batch_size=4 --set training.steps=20 \
    --set training.seq_len=32 --set training.lr=3e-3 --set training.min_lr=3e-3 --set data.val_fraction=0.125 --set checkpoint.every=10 --resume
check "the resumed GRPO run samples and scores as the uninterrupted one did, bit for bit" "$same_steps" \
    "$work/grpo-run/metrics.jsonl" "$work/grpo-resumed/metrics.jsonl" reward
# Rewarded by a reward model instead (the one trained above, on the same tokenizer): its scores are the rewards.
expect_ok "grpo rewarded by a reward model" "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" \
    --out "$work/grpo-rm" --reward-model "$work/reward-1" --max-new-tokens 4 --group-size 4 --set training.batch_size=2 \
    --set training.steps=2 --set training.seq_len=32 --set training.lr=1e-3
check "the reward model's scores are the rewards (not a checker's 0 or 1)" \
    '(lambda v: len(v) == 2 and all(x not in (0, 1) for x in v))([json.loads(l)["reward"] for l in open(sys.argv[1]) if "\"reward\"" in l])' \
    "$work/grpo-rm/metrics.jsonl"
# The reward is read at a sequence's last token: a completion cut to the reward model's context would be scored mid-way.
expect_error "grpo whose completions would not fit the reward model" "reads at most .* tokens (its max_seq_len), and the longest prompt as it reads it takes .*: lower --max-new-tokens to" \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --reward-model "$work/reward-1" \
    --max-new-tokens 100000 --set training.seq_len=32
expect_error "grpo with a reward model of another tokenizer" "has another tokenizer than --init-from" \
    "$keel" grpo --init-from "$work/llamarun" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --reward-model "$work/reward-1" \
    --set training.seq_len=16
echo '{"prompt": "Say a lucky number:", "solution": "7"}' >"$work/no-answer.jsonl"
expect_error "grpo on a task without an answer" 'no-answer.jsonl:1: a task needs "answer"' \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/no-answer.jsonl" --out "$work/grpo-bad"
expect_error "grpo with no update per batch" "--iterations must be positive (got 0)" \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --iterations 0 --set training.seq_len=32
# Every completion of a group is generated and held at once: a count past any use would fill the machine's memory.
expect_error "grpo with a group past its bound" "--group-size must be from 2 to 4096 completions per prompt" \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --group-size 9223372036854775807 \
    --set training.seq_len=32
usage "grpo at temperature 0" "--temperature must be above 0" \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --temperature 0
usage "grpo with an unknown reward" "--reward must be one of last-number, exact-match" \
    "$keel" grpo --init-from "$work/dpo-base" --data "$work/lucky.jsonl" --out "$work/grpo-bad" --reward judge
# keel serve of an imported model: the chat template's default system message, and the markers as special tokens.
start_server "$work/tiny-imported"
grep -q "chat format: the model's chat template" "$work/serve.err" \
    && pass "serve runs the imported model's chat template" || fail "serve runs the imported model's chat template"
post chat/completions '{"messages": [{"role": "user", "content": "In 1599 the"}], "max_tokens": 3}'
check "a chat completion from the imported model" '(lambda r: r["choices"][0]["message"]["role"] == "assistant")(json.load(open(sys.argv[1])))' \
    "$work/response.json"
# A completion's prompt reads a special token's spelling as that token, as llama.cpp's server does: one token more.
post completions '{"prompt": "In 1599 the", "max_tokens": 1}' && cp "$work/response.json" "$work/plain.json"
post completions '{"prompt": "<|im_start|>In 1599 the", "max_tokens": 1}'
check "a completion's prompt reads <|im_start|> as the special token, not its letters" \
    'json.load(open(sys.argv[1]))["usage"]["prompt_tokens"] == json.load(open(sys.argv[2]))["usage"]["prompt_tokens"] + 1' \
    "$work/response.json" "$work/plain.json"
stop_server
# generate --chat formats the prompt with the model's template, as jinja2 renders it (transformers' settings); a model
# without a template gets ChatML.
"$keel" generate --checkpoint "$work/tiny.gguf" --prompt "In 1599 the" --chat --max-tokens 3 --json >"$work/chat.json" 2>/dev/null
python3 -c 'import json, sys; json.dump([{"messages": [{"role": "user", "content": "In 1599 the"}], "add_generation_prompt": True, "variables": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}}], open(sys.argv[1], "w"))' "$work/chat-case.json"
python3 -c 'import gguf, sys; f = gguf.GGUFReader(sys.argv[1]).fields["tokenizer.chat_template"]; open(sys.argv[2], "w").write(bytes(f.parts[f.data[0]]).decode())' \
    "$work/tiny.gguf" "$work/tiny-template.jinja"
python3 "$here/../Reference/render_chat_template.py" "$work/tiny-template.jinja" "$work/chat-case.json" >"$work/chat-expected.json"
check "generate --chat renders the file's chat template as jinja2 does" \
    'json.load(open(sys.argv[1]))["chat_prompt"] == json.load(open(sys.argv[2]))[0]["text"] and json.load(open(sys.argv[2]))[0]["text"].startswith("<|im_start|>system\nYou are a tiny test model")' \
    "$work/chat.json" "$work/chat-expected.json"
expect_ok "generate --chat from a model without a template (ChatML)" "$keel" generate --checkpoint "$work/llamarun" --prompt "Hi" --chat --max-tokens 2 --json
check "a model without a template gets ChatML" '"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" in json.load(open(sys.argv[1]))["chat_prompt"]' "$work/out"
# A template that does not parse: serve refuses to start (no other model's format in its place), generate --chat says
# why, and generating without --chat still works.
python3 "$here/../Reference/gguf_files.py" model "$work/broken-template.gguf" "$work/broken-template.safetensors" --broken-template
expect_error "serve a model whose chat template does not parse" "the model's chat template cannot be read: line 1:" \
    "$keel" serve --checkpoint "$work/broken-template.gguf" --port 0
expect_error "generate --chat with a template that does not parse" "the model's chat template cannot be read" \
    "$keel" generate --checkpoint "$work/broken-template.gguf" --prompt "Hi" --chat --max-tokens 1
expect_ok "generate without --chat from a model whose template does not parse" "$keel" generate --checkpoint "$work/broken-template.gguf" --prompt "Hi" --max-tokens 1
# A beginning-of-sequence id the vocabulary lacks, in a file that asks for it before every text: refused by name (generate
# and serve trapped on the model's missing row).
python3 "$here/../Reference/gguf_files.py" model "$work/bad-bos.gguf" "$work/bad-bos.safetensors" --add-bos --bos-id 999999
expect_error "generate from a GGUF file whose BOS id is outside its vocabulary" "tokenizer.ggml.bos_token_id is 999999, not one of the" \
    "$keel" generate --checkpoint "$work/bad-bos.gguf" --prompt "Hi" --max-tokens 1
expect_error "import a GGUF file whose BOS id is outside its vocabulary" "tokenizer.ggml.bos_token_id is 999999" \
    "$keel" import gguf "$work/bad-bos.gguf" --out "$work/bad-bos-imported"
expect_error "import a file that is not GGUF" "not a GGUF file" "$keel" import gguf "$work/hamlet.txt" --out "$work/not-imported"
[ ! -e "$work/not-imported" ] && pass "a refused import leaves no run" || fail "a refused import leaves no run"
expect_error "import into a run that exists" "already holds a run (step_00000000); choose another --out" \
    "$keel" import gguf "$work/tiny.gguf" --out "$work/tiny-imported"
expect_error "quantize a GGUF file again" "is a GGUF file, which runs in its own formats" \
    "$keel" generate --checkpoint "$work/tiny.gguf" --quantize q8_0
expect_error "eval a GGUF file on a prepared dataset" "a GGUF file is evaluated on text files" \
    "$keel" eval --checkpoint "$work/tiny.gguf" --dataset "$work/corpus"
# keel serve: OpenAI's own client against it (Tests/Reference/openai_client_check.py: completions and chat, streamed
# and not, concurrent requests, malformed ones); bad options refused before it listens.
start_server "$work/llamarun" --context-shift   # the client's prompts and streams are longer than its 16 tokens
if [ -n "$port" ] && python3 "$here/../Reference/openai_client_check.py" "http://127.0.0.1:$port/v1" "$work/serve.err" >"$work/out" 2>&1; then
    pass "keel serve answers OpenAI's client: completions, chat, streams, concurrent and malformed requests"
else
    fail "keel serve answers OpenAI's client"; sed 's/^/    /' "$work/out" "$work/serve.err" | head -20
fi
stop_server
# A request that does not arrive whole within --timeout gets 408 and its thread back; the server answers the next.
start_server "$work/llamarun" --timeout 2
python3 -c '
import socket, sys, time
started = time.monotonic()
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as raw:
    raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: keel\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
    answer = b""
    while chunk := raw.recv(65536):
        answer += chunk
sys.stdout.write(f"{time.monotonic() - started:.1f} {answer.decode()}")' "$port" >"$work/late.txt" 2>&1
post completions '{"prompt": "To be", "max_tokens": 2}'
check "a request not whole within --timeout 2 gets 408 (not the 60 s default), and the server answers the next" \
    '(lambda seconds, answer, r: answer.startswith("HTTP/1.1 408") and "did not arrive within 2 s" in answer and seconds < 30 and r["usage"]["completion_tokens"] == 2)(float(open(sys.argv[1]).read().split(" ", 1)[0]), open(sys.argv[1]).read().split(" ", 1)[1], json.load(open(sys.argv[2])))' \
    "$work/late.txt" "$work/response.json"
# Headers whose meaning a proxy in front could read otherwise are refused: two different Content-Lengths, white space
# in a name (RFC 9112 §6.3, §5.1); the server answers the next request.
python3 -c '
import json, socket, sys
answers = []
for head in (b"Content-Length: 2\r\nContent-Length: 12\r\n", b"Content-Length : 12\r\n"):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as raw:
        raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: keel\r\n" + head + b"\r\n{\"prompt\": 1}")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    answers.append(answer.decode())
print(json.dumps(answers))' "$port" >"$work/smuggled.json" 2>&1
post completions '{"prompt": "To be", "max_tokens": 2}'
check "two Content-Lengths and a header name with a space are refused (400), and the server answers the next" \
    '(lambda a, r: a[0].startswith("HTTP/1.1 400") and "Content-Length given twice, as 2 and 12" in a[0] and a[1].startswith("HTTP/1.1 400") and "header name" in a[1] and r["usage"]["completion_tokens"] == 2)(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' \
    "$work/smuggled.json" "$work/response.json"
stop_server
usage "serve with no time for a request" "--timeout must be at least 1 second (got 0)" "$keel" serve --checkpoint "$work/llamarun" --timeout 0
usage "serve on a port that cannot be" "--port must be 0 to 65535" "$keel" serve --checkpoint "$work/llamarun" --port 70000
usage "serve in an unknown format" "--quantize must be one of" "$keel" serve --checkpoint "$work/llamarun" --quantize q9
usage "serve with no request at a time" "--parallel must be at least 1 (got 0)" "$keel" serve --checkpoint "$work/llamarun" --parallel 0
expect_ok "eval --quantize q8_0" "$keel" eval --checkpoint "$work/llamarun" "$work/corpus" --max-windows 4 --quantize q8_0 --json
check "eval --quantize reports both perplexities, the KL divergence and top-1 agreement" \
    '(lambda r: r["format"] == "q8_0" and r["tokens"] == 64 and r["perplexity"] > 1 and r["perplexity_fp32"] > 1 and 0 <= r["kl_mean"] <= r["kl_p99"] <= r["kl_max"] and 0 <= r["top1_agreement"] <= 1)(json.loads(open(sys.argv[1]).read()))' \
    "$work/out"
usage "eval --llama-cpp-scoring of windows too short to score" "--seq-len must be at least 3 with --llama-cpp-scoring (got 2)" \
    "$keel" eval --checkpoint "$work/llamarun" "$work/corpus" --llama-cpp-scoring --seq-len 2
usage "eval with an unknown format" "--quantize must be one of f16, q8_0, q4_0, q4_1, q5_0, q4_k (got q2)" \
    "$keel" eval --checkpoint "$work/llamarun" "$work/corpus" --quantize q2
# keel eval --llama-cpp-scoring counts what llama-perplexity counts: each window's predictions from its middle to its
# next-to-last token (here computed from the training forward pass's logits of the same 16 bytes).
printf 'To be, or not to be, that is the question' >"$work/question.txt"
expect_ok "eval --llama-cpp-scoring" "$keel" eval --checkpoint "$work/llamarun" "$work/question.txt" --seq-len 16 --max-windows 1 --llama-cpp-scoring --json
cp "$work/out" "$work/scored.json"
expect_ok "logits of the first window" "$keel" logits --checkpoint "$work/llamarun" --text "To be, or not to" --out "$work/window.safetensors"
check "llama.cpp's scoring counts the window's second half, positions 8 to 14, as the logits give them" \
    '(lambda r, t, l: r["scored_tokens"] == 7 and abs(r["perplexity"] - __import__("numpy").exp(sum(__import__("numpy").logaddexp.reduce(l[p].astype("float64")) - l[p][t[p + 1]] for p in range(8, 15)) / 7)) < 1e-4 * r["perplexity"])(json.load(open(sys.argv[1])), *(lambda f: (f["tokens"], f["logits"]))(__import__("sys").path.insert(0, sys.argv[3]) or __import__("safetensors_np").load_file(sys.argv[2])))' \
    "$work/scored.json" "$work/window.safetensors" "$here/../Reference"
# GPT-2 in GGUF (llama.cpp's "gpt2": Conv1D weights as rows of outputs, the tied head written out): the file runs as
# the run does, and imports back to the same loss.
expect_ok "export gguf of a GPT-2 run" "$keel" export gguf --checkpoint "$work/run" --out "$work/gpt2.gguf"
check "gguf-py reads a gpt2 file with its head written out" \
    '(lambda r: r.fields["general.architecture"].contents() == "gpt2" and any(t.name == "output.weight" for t in r.tensors))(__import__("gguf").GGUFReader(sys.argv[1]))' \
    "$work/gpt2.gguf"
expect_ok "eval of the GPT-2 run" "$keel" eval --checkpoint "$work/run" "$work/question.txt" --seq-len 16 --json
cp "$work/out" "$work/gpt2-run.json"
expect_ok "import the GPT-2 file" "$keel" import gguf "$work/gpt2.gguf" --out "$work/gpt2-imported"
expect_ok "eval of the imported GPT-2" "$keel" eval --checkpoint "$work/gpt2-imported" "$work/question.txt" --seq-len 16 --json
check "the imported GPT-2 has the run's loss" 'json.load(open(sys.argv[1]))["loss"] == json.load(open(sys.argv[2]))["loss"]' \
    "$work/out" "$work/gpt2-run.json"
expect_error "export gguf in a format the model's width cannot hold" "GGUF export: token_embd.weight in q8_0: a q8_0 matrix needs rows of a multiple of 32 values; this one has 16" \
    "$keel" export gguf --checkpoint "$work/run" --type q8_0 --out "$work/gpt2-q8.gguf"
[ ! -e "$work/gpt2-q8.gguf" ] && pass "a refused export writes no file" || fail "a refused export writes no file"
usage "export gguf with an unknown type" "--type must be one of f32, f16, q8_0, q4_0, q4_1, q5_0, q4_k (got q3)" \
    "$keel" export gguf --checkpoint "$work/llamarun" --type q3 --out "$work/x.gguf"

expect_ok "export hf" "$keel" export hf --checkpoint "$work/run" --out "$work/hf"
python3 -c "import json,sys; c=json.load(open('$work/hf/config.json')); sys.exit(0 if c['model_type']=='gpt2' else 1)" \
    && [ -s "$work/hf/model.safetensors" ] && pass "export wrote config.json and weights" || fail "export wrote config.json and weights"
# With the tokenizer, which AutoTokenizer reads as it is (PreTrainedTokenizerFast): the byte tokenizer's ids are the bytes
# and 256 its end of text, for Hugging Face's tokenizers as for Keel.
check "the byte tokenizer's export reads text as its bytes, and names its end of text" \
    '(lambda t, c: t.encode("Hé<|endoftext|>").ids == list("Hé".encode()) + [256] and t.decode([72, 195, 169]) == "Hé" and (c["tokenizer_class"], c["eos_token"]) == ("PreTrainedTokenizerFast", "<|endoftext|>"))(__import__("tokenizers").Tokenizer.from_file(sys.argv[1] + "/tokenizer.json"), json.load(open(sys.argv[1] + "/tokenizer_config.json")))' \
    "$work/hf"
# An export writes into a new or empty directory or an earlier export's, whose files it replaces, removing those it
# does not write again (another model's chat template); a directory with other weights or tokenizer files is refused.
mkdir -p "$work/hf-foreign" && echo '{}' >"$work/hf-foreign/vocab.json"
expect_error "export hf into a directory holding another tokenizer" "holds files an export does not write (vocab.json)" \
    "$keel" export hf --checkpoint "$work/run" --out "$work/hf-foreign"
[ "$(ls "$work/hf-foreign")" = "vocab.json" ] && pass "the refused export wrote nothing" || fail "the refused export wrote nothing"
expect_error "export hf into a run" "holds files an export does not write (checkpoints, config.toml" \
    "$keel" export hf --checkpoint "$work/run" --out "$work/run"

# keel import hf: directories transformers itself wrote (scripts/hf_check/make_import_fixtures.py) — GPT-2 with only
# vocab.json + merges.txt, Llama with GQA in bfloat16 shards, Llama with a tied head and SmolLM2's digit-splitting
# tokenizer — give transformers' token ids and logits (within 1e-5 of the largest); export → import → export is
# byte-identical; bad directories are one error.
fixtures="$here/../Reference/hf_import"
for case in gpt2 llama-gqa llama-tied; do
    expect_ok "import hf $case" "$keel" import hf "$fixtures/$case" --out "$work/hf-$case"
    expect_ok "logits of the imported $case" "$keel" logits --checkpoint "$work/hf-$case" --text "$(cat "$fixtures/text.txt")" \
        --out "$work/hf-$case.logits"
    check "$case: transformers' token ids, and its logits within 1e-5 relative" \
        '(lambda k, t: (k["tokens"].reshape(-1) == t["tokens"]).all() and abs(k["logits"].reshape(t["logits"].shape) - t["logits"]).max() <= 1e-5 * abs(t["logits"]).max())(*(lambda m: (m.load_file(sys.argv[1]), m.load_file(sys.argv[2])))(__import__("sys").path.insert(0, sys.argv[3]) or __import__("safetensors_np")))' \
        "$work/hf-$case.logits" "$fixtures/$case/logits.safetensors" "$here/../Reference"
    expect_ok "export the imported $case" "$keel" export hf --checkpoint "$work/hf-$case" --out "$work/hf-$case-1"
    cmp -s "$work/hf-$case/checkpoints/step_00000000/tokenizer.json" "$work/hf-$case-1/tokenizer.json" \
        && pass "$case: the export keeps the import's tokenizer.json" || fail "$case: the export keeps the import's tokenizer.json"
    expect_ok "import that export, tokenizer and all" "$keel" import hf "$work/hf-$case-1" --out "$work/hf-$case-again"
    expect_ok "export it again" "$keel" export hf --checkpoint "$work/hf-$case-again" --out "$work/hf-$case-2"
    [ "$(ls "$work/hf-$case-1")" = "$(ls "$work/hf-$case-2")" ] && (cd "$work/hf-$case-1" && for f in *; do cmp -s "$f" "../hf-$case-2/$f" || exit 1; done) \
        && pass "$case: export → import → export is byte-identical, every file" || fail "$case: export → import → export is byte-identical, every file"
done
check "the tied Llama's export keeps its chat template, and its tokenizer_config.json its end of sequence" \
    '(lambda d: open(d + "/chat_template.jinja").read() == open(sys.argv[2] + "/chat_template.jinja").read() and json.load(open(d + "/tokenizer_config.json"))["eos_token"] == json.load(open(sys.argv[2] + "/tokenizer_config.json"))["eos_token"])(sys.argv[1])' \
    "$work/hf-llama-tied-1" "$fixtures/llama-tied"
cp -r "$work/hf-llama-tied-1" "$work/hf-reexport" && echo "# model card" >"$work/hf-reexport/README.md"
expect_ok "export GPT-2 over the Llama's export" "$keel" export hf --checkpoint "$work/hf-gpt2" --out "$work/hf-reexport"
check "an export over an earlier one replaces its files, drops its chat template and keeps the model card" \
    'set(__import__("os").listdir(sys.argv[1])) == set(__import__("os").listdir(sys.argv[2])) | {"README.md"} and all(open(sys.argv[1] + "/" + f, "rb").read() == open(sys.argv[2] + "/" + f, "rb").read() for f in __import__("os").listdir(sys.argv[2]))' \
    "$work/hf-reexport" "$work/hf-gpt2-1"
# A directory exported into over an older sharded download holds model.safetensors and a stale shard index: the
# single file is read, as from_pretrained reads it (the index names a shard that is gone).
mkdir -p "$work/hf-stale" && cp "$fixtures/gpt2/"* "$work/hf-stale/"
printf '{"weight_map": {"transformer.wte.weight": "model-00001-of-00002.safetensors"}}' >"$work/hf-stale/model.safetensors.index.json"
expect_ok "import hf reads model.safetensors before a stale shard index" "$keel" import hf "$work/hf-stale" --out "$work/hf-stale-run"
# The Hub's GPT-2 files (openai-community/gpt2 and its kind) store the base model's names, without "transformer.",
# and old transformers' attention-mask buffers: the import reads them as transformers does, to the same logits.
mkdir -p "$work/hf-gpt2-hub"
cp "$fixtures/gpt2/config.json" "$fixtures/gpt2/vocab.json" "$fixtures/gpt2/merges.txt" "$work/hf-gpt2-hub/"
python3 -c 'import sys; sys.path.insert(0, sys.argv[3]); import numpy as np, safetensors_np as st; w = st.load_file(sys.argv[1]); n = sum(k.endswith(".ln_1.weight") for k in w); hub = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}; hub.update({f"h.{i}.attn.bias": np.tril(np.ones((1, 1, 8, 8), np.float32)) for i in range(n)}); st.save_file(hub, sys.argv[2])' \
    "$fixtures/gpt2/model.safetensors" "$work/hf-gpt2-hub/model.safetensors" "$here/../Reference"
expect_ok "import hf of GPT-2 as the Hub stores it" "$keel" import hf "$work/hf-gpt2-hub" --out "$work/hf-gpt2-hub-run"
expect_ok "logits of that import" "$keel" logits --checkpoint "$work/hf-gpt2-hub-run" --text "$(cat "$fixtures/text.txt")" \
    --out "$work/hf-gpt2-hub.logits"
cmp -s "$work/hf-gpt2-hub.logits" "$work/hf-gpt2.logits" && pass "it gives the same logits as the prefixed file" \
    || fail "it gives the same logits as the prefixed file"
# A one-layer Llama with one key/value head (multi-query attention): a config value of 1 is a number, not a boolean.
expect_ok "train a one-layer Llama with one key/value head" "$keel" train --config "$work/tiny.toml" --out "$work/mqa" \
    --set training.steps=1 --set 'model.arch="llama"' --set model.n_layer=1 --set model.n_kv_head=1 --set model.vocab_size=320
expect_ok "export it" "$keel" export hf --checkpoint "$work/mqa" --out "$work/mqa-hf"
expect_ok "import it back" "$keel" import hf "$work/mqa-hf" --out "$work/mqa-again" \
    --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
[ -s "$work/hf-llama-tied/checkpoints/step_00000000/chat_template.jinja" ] && pass "the chat template is kept beside the tokenizer" \
    || fail "the chat template is kept beside the tokenizer"
# and goes into a GGUF export (and so a quantized model), where llama.cpp and keel serve find it.
expect_ok "export the imported llama-tied as GGUF" "$keel" export gguf --checkpoint "$work/hf-llama-tied" --type f16 --out "$work/hf-llama-tied.gguf"
check "the GGUF export carries the chat template" \
    '(lambda f: bytes(f.parts[f.data[0]]).decode() == open(sys.argv[2]).read())(__import__("gguf").GGUFReader(sys.argv[1]).fields["tokenizer.chat_template"])' \
    "$work/hf-llama-tied.gguf" "$work/hf-llama-tied/checkpoints/step_00000000/chat_template.jinja"
# An import is a run like the others: sample continues a prompt from it, and train --init-from fine-tunes it with its
# own tokenizer (at a learning rate of 1e-30 the weights stay as imported, to the bit: the same logits).
expect_ok "sample from the imported llama-gqa" "$keel" sample --checkpoint "$work/hf-llama-gqa" --tokens 6 --prompt "The" --temperature 0
check "sample continues the prompt from the import" 'open(sys.argv[1], "rb").read().startswith(b"The") and len(open(sys.argv[1], "rb").read()) > 3' "$work/out"
{ cat "$work/hf-llama-gqa/config.toml"
  printf '[data]\npaths = ["%s"]\ntokenizer = "%s"\n[training]\nsteps = 1\nbatch_size = 2\nseq_len = 16\nlr = 1e-30\nmin_lr = 1e-30\n' \
      "$work/corpus" "$work/hf-llama-gqa/checkpoints/step_00000000/tokenizer.json"; } >"$work/hf-finetune.toml"
expect_ok "fine-tune the imported llama-gqa" "$keel" train --config "$work/hf-finetune.toml" --out "$work/hf-finetuned" \
    --init-from "$work/hf-llama-gqa"
expect_ok "logits of the fine-tuned import" "$keel" logits --checkpoint "$work/hf-finetuned" --text "$(cat "$fixtures/text.txt")" \
    --out "$work/hf-finetuned.logits"
cmp -s "$work/hf-finetuned.logits" "$work/hf-llama-gqa.logits" && pass "the fine-tuned import (learning rate 1e-30) gives the import's logits" \
    || fail "the fine-tuned import (learning rate 1e-30) gives the import's logits"
mkdir -p "$work/hf-bad"
expect_error "import hf of a directory without config.json" "config.json: no such file" "$keel" import hf "$work/hf-bad" --out "$work/x"
printf '{"model_type": "bert"}' >"$work/hf-bad/config.json"
expect_error "import hf of another model type" 'model_type is "bert"; Keel imports "gpt2" and "llama" models' \
    "$keel" import hf "$work/hf-bad" --out "$work/x"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["n_layer"] = 3; json.dump(c, open(sys.argv[2], "w"))' \
    "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
cp "$work/hf-gpt2-1/model.safetensors" "$work/hf-bad/"
expect_error "import hf whose weights miss a layer" "no tensor transformer.h.2.ln_1.weight in the model's safetensors files" \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
# A config.json that asks for 2³⁶ parameters over the small model's file: refused by the file's shapes before the model is
# allocated (it failed allocating 320 GiB).
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["vocab_size"] = 1048576; c["n_embd"] = 65536; json.dump(c, open(sys.argv[2], "w"))' \
    "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
expect_error "import hf whose config.json is far larger than its weights" "has shape \\[.*\\], expected \\[1048576, 65536\\]" \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["activation_function"] = "relu"; json.dump(c, open(sys.argv[2], "w"))' \
    "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
expect_error "import hf with another activation" 'activation_function is "relu"' \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
# transformers takes 1 as true: attention scaled by the layer's index is refused, not read as its default.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["scale_attn_by_inverse_layer_idx"] = 1; json.dump(c, open(sys.argv[2], "w"))' \
    "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
expect_error "import hf with a flag written as 1" "attention scaled other than by 1/sqrt(head width)" \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
# And true is not a count: a boolean where a size belongs is refused, not read as 1.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["n_layer"] = True; json.dump(c, open(sys.argv[2], "w"))' \
    "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
expect_error "import hf with a boolean layer count" "n_layer must be a positive integer" \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
# RoPE's base must be a positive number, where transformers 5 writes it (rope_parameters) and where 4 did.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["rope_parameters"]["rope_theta"] = True; json.dump(c, open(sys.argv[2], "w"))' \
    "$fixtures/llama-gqa/config.json" "$work/hf-bad/config.json"
expect_error "import hf with a boolean rope_parameters.rope_theta" "rope_parameters.rope_theta must be a positive number (got 1)" \
    "$keel" import hf "$work/hf-bad" --out "$work/x"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); del c["rope_parameters"]; c["rope_theta"] = -1; json.dump(c, open(sys.argv[2], "w"))' \
    "$fixtures/llama-gqa/config.json" "$work/hf-bad/config.json"
expect_error "import hf with a negative rope_theta" "rope_theta must be a positive number (got -1)" \
    "$keel" import hf "$work/hf-bad" --out "$work/x"
cp "$work/hf-gpt2-1/config.json" "$work/hf-bad/config.json"
# A GPT-2 file may name its tensors with or without "transformer.": one holding a tensor under both names is refused
# (the header gets a second name for a copy of the token table's bytes, after the others: a file safetensors reads).
python3 - "$work/hf-gpt2-1/model.safetensors" "$work/hf-twice.safetensors" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
size = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + size])
tensors = data[8 + size:]
name = next(n for n in header if n.endswith("wte.weight"))
start, end = header[name]["data_offsets"]
copy = dict(header[name], data_offsets=[len(tensors), len(tensors) + end - start])
header[name[len("transformer."):] if name.startswith("transformer.") else "transformer." + name] = copy
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + tensors + tensors[start:end])
PY
cp "$work/hf-twice.safetensors" "$work/hf-bad/model.safetensors"
expect_error "import hf of a tensor stored under two names" "tensor transformer.wte.weight is stored twice (as " \
    "$keel" import hf "$work/hf-bad" --out "$work/x" --tokenizer "$work/hf-gpt2/checkpoints/step_00000000/tokenizer.json"
cp "$work/hf-gpt2-1/model.safetensors" "$work/hf-bad/"
expect_error "import hf without a tokenizer" "no tokenizer.json (or vocab.json and merges.txt); give one with --tokenizer" \
    "$keel" import hf "$work/hf-bad" --out "$work/x"
[ ! -e "$work/x" ] && pass "refused imports leave no run" || fail "refused imports leave no run"

newest=$(ls -d "$work"/run/checkpoints/step_* | sort | tail -1)

# keel checkpoint convert: one consolidated safetensors file, or the same Hugging Face directory as export hf.
expect_ok "checkpoint convert to one safetensors file" "$keel" checkpoint convert "$work/run" --out "$work/consolidated.safetensors"
expect_ok "checkpoint convert to a Hugging Face directory" "$keel" checkpoint convert "$newest" --to hf --out "$work/hf2"
cmp -s "$work/hf/model.safetensors" "$work/hf2/model.safetensors" && cmp -s "$work/hf/config.json" "$work/hf2/config.json" \
    && cmp -s "$work/hf/tokenizer.json" "$work/hf2/tokenizer.json" && pass "checkpoint convert --to hf writes what export hf writes" || fail "checkpoint convert --to hf writes what export hf writes"

# keel eval: the run's loss on a text file equals the float64 NumPy reference model's on the same windows (the
# reference reads the converted weights, so this checks convert too).
expect_ok "eval on a text file" "$keel" eval --checkpoint "$work/run" --seq-len 16 --json "$work/corpus/doc1.txt"
reference=$(python3 "$here/eval_reference.py" "$newest" "$work/consolidated.safetensors" "$work/corpus/doc1.txt" 16)
check "eval's loss equals the NumPy reference's ($reference), over every window" \
    'abs(json.load(open(sys.argv[1]))["loss"] / float(sys.argv[2]) - 1) < 1e-5 and json.load(open(sys.argv[1]))["windows"] == int(sys.argv[3]) // 16' \
    "$work/out" "$reference" "$(wc -c <"$work/corpus/doc1.txt")"
expect_ok "eval prints loss and perplexity" "$keel" eval --checkpoint "$work/run" --max-windows 3 "$work/corpus"
grep -Eq "^loss [0-9]+\.[0-9]{4}  perplexity [0-9]+\.[0-9]{2}  \(3 windows of 16 tokens: 48 predicted tokens\)$" "$work/out" \
    && pass "eval's summary line" || fail "eval's summary line: $(cat "$work/out")"
expect_error "eval with a window longer than the model's" "longer than the model's max_seq_len (16)" \
    "$keel" eval --checkpoint "$work/run" --seq-len 17 "$work/corpus"
usage "checkpoint convert to an unknown format" "--to must be safetensors or hf (got gguf)" \
    "$keel" checkpoint convert "$work/run" --to gguf --out "$work/x"
usage "eval without data" "give either --dataset DIR or files to evaluate on" "$keel" eval --checkpoint "$work/run"
usage "eval with negative --max-windows" "--max-windows must not be negative" \
    "$keel" eval --checkpoint "$work/run" --max-windows=-1 "$work/corpus"
usage "pipeline-bench with an unknown schedule" "unknown schedule 'pipedream'" "$keel" pipeline-bench --schedules gpipe,pipedream
usage "pipeline-bench with no timed steps" "--steps must be at least 1" "$keel" pipeline-bench --steps 0
usage "train with a negative trace window" "--trace-steps must not be negative (got -1)" "$keel" train --config "$work/tiny.toml" --out "$work/r0" --trace-steps=-1
usage "pipeline-bench with a pipeline size of 0 to simulate" "--project: '0' is not a positive pipeline size" \
    "$keel" pipeline-bench --project 4,0
# Threads follow the processors a process is bound to (taskset, a launcher's binding, a cpuset): bound to one, one
# thread (Foundation's count ignores the binding: it ran the machine's every core's worth on one).
expect_ok "bench --machine bound to one processor" env -u KEEL_THREADS taskset -c 0 "$keel" bench --machine --json
check "a process bound to one processor runs one thread" 'json.load(open(sys.argv[1]))["threads"] == 1' "$work/out"
# A KEEL_THREADS that is not a count is said to be ignored (it was ignored silently).
expect_ok "bench --machine with KEEL_THREADS=zero" env KEEL_THREADS=zero taskset -c 0 "$keel" bench --machine --json
grep -q "^keel: warning: KEEL_THREADS=zero is not a count from 1 to 4096; using the processors this process may run on$" "$work/err" \
    && python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["threads"] == 1' "$work/out" \
    && pass "a KEEL_THREADS that is not a count is warned about and ignored" \
    || fail "a KEEL_THREADS that is not a count is warned about and ignored: $(cat "$work/err")"
usage "a trace in a directory that does not exist" "--trace: the directory $work/none does not exist" \
    "$keel" train --config "$work/tiny.toml" --trace "$work/none/trace.json"
expect_ok "checkpoint inspect on a run" "$keel" checkpoint inspect "$work/run"
grep -q "^  step_00000006  valid$" "$work/out" && grep -q "^state: step 6," "$work/out" \
    && grep -q "^  rank_00000.safetensors .* ok$" "$work/out" && grep -q "^every file matches" "$work/out" \
    && grep -q "^written by: pp 1 × tp 1 × dp 1, ZeRO-0" "$work/out" \
    && pass "checkpoint inspect lists the checkpoints, the state and every file" \
    || fail "checkpoint inspect lists the checkpoints, the state and every file"
truncate -s 100 "$newest/rank_00000.safetensors"
expect_error "truncated checkpoint" "truncated" "$keel" sample --checkpoint "$newest"
expect_error "checkpoint inspect names the damaged file" "rank_00000.safetensors has 100 bytes" \
    "$keel" checkpoint inspect "$newest"
expect_error "missing checkpoint" "no such directory" "$keel" sample --checkpoint "$work/none"

# (A checkpoint every step: the one still being written when the next step diverges is finished first.)
expect_error "diverging run names the step" "diverged" "$keel" train --config "$work/tiny.toml" --out "$work/nan" \
    --set training.lr=1e30 --set training.weight_decay=0.0 --set training.min_lr=1e30 --set training.grad_clip=0.0 \
    --set checkpoint.every=1
cp "$work/err" "$work/nan.err"
ls "$work"/nan/checkpoints/.step_* >/dev/null 2>&1 && fail "no partial checkpoint left" || pass "no partial checkpoint left"
# Its metrics end with the step it diverged at, the value that was not finite as null, after the record of the
# checkpoint that was finished first.
check "the diverged step's record closes metrics.jsonl" \
    '(lambda r: r["diverged"] == 1 and r["step"] == int(open(sys.argv[2]).read().split(" at step ")[1].split(";")[0]) and None in (r["loss"], r["grad_norm"]))(json.loads(open(sys.argv[1]).read().splitlines()[-1]))' \
    "$work/nan/metrics.jsonl" "$work/nan.err"
"$keel" train --config "$work/tiny.toml" --out "$work/nan-status" --set training.lr=1e30 --set training.weight_decay=0.0 --set training.min_lr=1e30 \
    --set training.grad_clip=0.0 >/dev/null 2>&1
status=$?
[ $status -eq 3 ] && pass "a diverged run alone exits with status 3, as a job's ranks do" \
    || fail "a diverged run alone exits with status 3, as a job's ranks do (exit $status)"

# The data path: train a tokenizer, prepare shards (text + gzip JSONL), train on them, sample, export.
printf '{"text": "Now is the winter of our discontent"}\n{"text": "Made glorious summer by this sun of York"}\n' \
    | gzip >"$work/corpus/extra.jsonl.gz"
expect_ok "tokenizer train" "$keel" tokenizer train --vocab-size 300 --input "$work/corpus" --out "$work/tok.json"
# 256 bytes + merges + end-of-text = 300 ids, the last one <|endoftext|>.
check "the trained tokenizer has 300 ids, <|endoftext|> last" \
    'len(json.load(open(sys.argv[1]))["model"]["vocab"]) + len(json.load(open(sys.argv[1]))["added_tokens"]) == 300 and json.load(open(sys.argv[1]))["added_tokens"][-1] == {**json.load(open(sys.argv[1]))["added_tokens"][-1], "content": "<|endoftext|>", "id": 299}' \
    "$work/tok.json"
echo "To be, or not" >"$work/line.txt"
usage "tokenizer bench with no measurements" "--repeats must be at least 1" \
    "$keel" tokenizer bench --tokenizer "$work/tok.json" --input "$work/line.txt" --repeats 0
expect_ok "tokenizer encode" "$keel" tokenizer encode --tokenizer "$work/tok.json" --input "$work/line.txt"
check "encode prints whitespace-separated ids below the vocabulary size" \
    'len(open(sys.argv[1]).read().split()) > 1 and all(0 <= int(t) < 300 for t in open(sys.argv[1]).read().split())' "$work/out"
cp "$work/out" "$work/ids.txt"
expect_ok "tokenizer decode" "$keel" tokenizer decode --tokenizer "$work/tok.json" --input "$work/ids.txt"
cmp -s "$work/out" "$work/line.txt" && pass "encode then decode gives the text back" || fail "encode then decode gives the text back"
expect_ok "data prepare" "$keel" data prepare --tokenizer "$work/tok.json" --input "$work/corpus" --out "$work/ds" --val-fraction 0.25
[ -f "$work/ds/manifest.json" ] && [ -f "$work/ds/tokenizer.json" ] && ls "$work"/ds/train_*.bin >/dev/null \
    && pass "dataset has manifest, tokenizer and shards" || fail "dataset has manifest, tokenizer and shards"
# 3 text files + 2 JSONL lines = 5 documents, ⌊5 × 0.25⌋ = 1 held out; counts agree with the shard files.
check "manifest counts documents and tokens as the shards hold them" \
    'json.load(open(sys.argv[1]))["train"]["documents"] == 4 and json.load(open(sys.argv[1]))["val"]["documents"] == 1 and all(sum(s["tokens"] for s in json.load(open(sys.argv[1]))[k]["shards"]) == json.load(open(sys.argv[1]))[k]["tokens"] == sum((__import__("os").path.getsize(sys.argv[2] + "/" + s["file"]) - 1024) // 2 for s in json.load(open(sys.argv[1]))[k]["shards"]) for k in ("train", "val"))' \
    "$work/ds/manifest.json" "$work/ds"
cat >"$work/ds.toml" <<TOML
[model]
n_layer = 1
n_head = 2
d_model = 16
max_seq_len = 16
[data]
dataset = "$work/ds"
[training]
steps = 4
batch_size = 2
eval_every = 0
eval_batches = 1
TOML
expect_ok "train on a prepared dataset" "$keel" train --config "$work/ds.toml" --out "$work/dsrun"
check "dataset run logged 4 steps" '[r["step"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r] == [1, 2, 3, 4]' \
    "$work/dsrun/metrics.jsonl"
cmp -s "$work/dsrun/tokenizer.json" "$work/tok.json" && pass "run keeps its tokenizer" || fail "run keeps its tokenizer"
# A warm-up as long as the run never reaches its peak learning rate nor decays: said, not silently done. And a run
# "until stopped" (steps = Int.max) shows its count and no ETA (the ETA's Int conversion trapped, the count read -1).
expect_ok "a warm-up longer than the run" "$keel" train --config "$work/ds.toml" --out "$work/warmrun" --set training.warmup_steps=4
grep -q "note: training.warmup_steps (4) is not below training.steps (4): the learning rate warms up for the whole run" "$work/err" \
    && pass "a warm-up as long as the run is noted" || fail "a warm-up as long as the run is noted"
expect_ok "a run of Int.max steps, stopped after one" "$keel" train --config "$work/ds.toml" --out "$work/endless" \
    --set training.steps=9223372036854775807 --stop-after 1
grep -q "^step  *1/9223372036854775807 | .* | ETA ?$" "$work/err" && pass "a run of Int.max steps shows its count and no ETA" \
    || fail "a run of Int.max steps shows its count and no ETA"
# A shard cut short under a running job (rewritten in place by another tool, a network file system that cannot deliver
# a page) makes the next read of its mapping a bus error: the run dies naming the file, not with a bare "Bus error".
cp -r "$work/ds" "$work/ds-cut"
sed "s|$work/ds\"|$work/ds-cut\"|; s/^steps = 4/steps = 1000000/" "$work/ds.toml" >"$work/ds-cut.toml"
"$keel" train --config "$work/ds-cut.toml" --out "$work/cutrun" >"$work/cut.out" 2>"$work/cut.err" &
trainer=$!
for _ in $(seq 1 300); do grep -q '"loss"' "$work/cutrun/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
# To nothing: every page of the mapping then faults (a part of the first page would still read).
truncate -s 0 "$work"/ds-cut/train_000000.bin
for _ in $(seq 1 300); do kill -0 $trainer 2>/dev/null || break; sleep 0.1; done
kill -9 $trainer 2>/dev/null
wait $trainer 2>/dev/null
status=$?
if [ $status -ne 0 ] && grep -q "^keel: reading $work/ds-cut/train_000000.bin failed at byte [0-9]*: the file was truncated" "$work/cut.err"; then
    pass "a shard cut short while training is named when its read fails"
else
    fail "a shard cut short while training is named when its read fails (status $status)"
fi
expect_ok "sample decodes with the run's tokenizer" "$keel" sample --checkpoint "$work/dsrun" --tokens 10 --prompt "To be"
# An empty prompt starts after the end-of-text token, as training's documents do (it started from token 0, a byte).
"$keel" generate --checkpoint "$work/dsrun" --prompt "" --max-tokens 12 --temperature 0 --json >"$work/empty-prompt.jsonl" 2>/dev/null
"$keel" generate --checkpoint "$work/dsrun" --prompt "<|endoftext|>" --max-tokens 12 --temperature 0 --json >"$work/eot-prompt.jsonl" 2>/dev/null
check "an empty prompt is continued as the end-of-text token is" \
    '(lambda e, t: len(e["text"]) > 0 and e["text"] == t["text"])(*[json.loads(open(f).readline()) for f in sys.argv[1:3]])' \
    "$work/empty-prompt.jsonl" "$work/eot-prompt.jsonl"
grep -q "^To be" "$work/out" && pass "the sample starts with its prompt" || fail "the sample starts with its prompt"
# A run trained on a tokenizer file of another name (tok.json, recorded in its state): fine-tuning it tokenizes with
# that file and keeps it (it used to fall back to bytes when the file was not called tokenizer.json).
expect_ok "train on tok.json" "$keel" train --config "$work/tiny.toml" --out "$work/tokrun" --set training.steps=2 \
    --set "data.tokenizer=\"$work/tok.json\"" --set model.vocab_size=300 --set model.max_seq_len=64 --set training.seq_len=16
expect_ok "dpo of a run whose tokenizer is tok.json" "$keel" dpo --init-from "$work/tokrun" \
    --data "$here/../Reference/dpo_trl/pairs_text.jsonl" --out "$work/dpo-tok" --set training.steps=1 \
    --set training.batch_size=2 --set training.seq_len=16 --set data.val_fraction=0
check "its checkpoint keeps tok.json, the run's tokenizer" \
    'json.load(open(sys.argv[1]))["state"]["tokenizer"] == "tok.json" and open(sys.argv[2], "rb").read() == open(sys.argv[3], "rb").read()' \
    "$work/dpo-tok/checkpoints/step_00000001/manifest.json" "$work/dpo-tok/checkpoints/step_00000001/tok.json" "$work/tok.json"
# reward eval reads with the tokenizer file its models' states name: a reward model on tok.json and one on bytes do
# not share a tokenizer (neither has a tokenizer.json, which once made them look alike, both read as bytes).
pairs_text="$here/../Reference/dpo_trl/pairs_text.jsonl"
expect_ok "reward train on the tok.json run" "$keel" reward train --init-from "$work/tokrun" --data "$pairs_text" \
    --out "$work/rm-tok" --set training.steps=1 --set training.batch_size=2 --set training.seq_len=64 --set data.val_fraction=0
expect_ok "a byte-level run of 64 tokens" "$keel" train --config "$work/tiny.toml" --out "$work/byte64" --set training.steps=1 \
    --set model.max_seq_len=64 --set training.seq_len=64
expect_ok "reward train on it" "$keel" reward train --init-from "$work/byte64" --data "$pairs_text" --out "$work/rm-byte" \
    --set training.steps=1 --set training.batch_size=2 --set training.seq_len=63 --set data.val_fraction=0
expect_error "reward eval of models of two tokenizers" "has another tokenizer than" \
    "$keel" reward eval --model "$work/rm-tok" --model "$work/rm-byte" --data "$pairs_text"
# keel sft of a run whose BPE tokenizer lacks ChatML's markers: they become special tokens 300 and 301, the token
# table grows to 320 rows (a multiple of 64), the two new ones each the mean of the 300 before them, and fine-tuning
# starts from that.
expect_ok "sft of a BPE run without ChatML's markers" "$keel" sft --init-from "$work/dsrun" --data "$work/pairs.jsonl" \
    --out "$work/sft-bpe" --set training.steps=2 --set training.batch_size=2
grep -q "sft: added <|im_start|> and <|im_end|> to the vocabulary (ids 300, 301; vocabulary 300 → 320)" "$work/err" \
    && pass "sft says which tokens it added" || fail "sft says which tokens it added"
check "the markers are special tokens of the tokenizer, and their embeddings start at the mean of the others" \
    'sys.path.insert(0, sys.argv[3]) is None and (lambda t, w, np: t.token_to_id("<|im_start|>") == 300 and t.encode("<|im_start|>user<|im_end|>").ids[0] == 300 and t.encode("<|im_start|>user<|im_end|>").ids[-1] == 301 and w.size == 320 * 16 and np.allclose(w.reshape(320, 16)[300], w.reshape(320, 16)[:300].mean(0), atol=1e-6) and np.allclose(w.reshape(320, 16)[301], w.reshape(320, 16)[300]))(__import__("tokenizers").Tokenizer.from_file(sys.argv[1]), __import__("safetensors_np").load_file(sys.argv[2])["model/transformer.wte.weight/0/0"], __import__("numpy"))' \
    "$work/sft-bpe/base/checkpoints/step_00000000/tokenizer.json" "$work/sft-bpe/base/checkpoints/step_00000000/rank_00000.safetensors" \
    "$here/../Reference"
# An attempt that fails after the extended base is made (a malformed line), then corrected to start from another run into
# the same directory: the base is made again from that run (it was reused, and the other run's weights trained), so the
# run logs what the first sft from that run logged.
printf '{"prompt": "To be", "completion": " or not"}\nnot json\n' >"$work/bad-sft-pairs.jsonl"
"$keel" sft --init-from "$work/warmrun" --data "$work/bad-sft-pairs.jsonl" --out "$work/sft-retry" --set training.steps=2 \
    --set training.batch_size=2 >"$work/out" 2>"$work/err"
[ -d "$work/sft-retry/base" ] && grep -q "bad-sft-pairs.jsonl:2" "$work/err" && pass "a failed sft leaves its extended base" \
    || fail "a failed sft leaves its extended base"
expect_ok "sft retried from another run into the same directory" "$keel" sft --init-from "$work/dsrun" --data "$work/pairs.jsonl" \
    --out "$work/sft-retry" --set training.steps=2 --set training.batch_size=2
check "the retried sft starts from the run it names, not the failed attempt's" \
    '(lambda a, b: len(a) == 2 and a == b)(*[[r["loss"] for r in map(json.loads, open(f)) if "loss" in r] for f in sys.argv[1:3]])' \
    "$work/sft-retry/metrics.jsonl" "$work/sft-bpe/metrics.jsonl"
# That model's vocabulary (320 rows) is padded beyond its tokenizer's 302 ids: sample, generate and serve draw only ids
# the tokenizer can decode (a padding id drawn once used to empty generate's and serve's text, and fail sample's).
expect_ok "sample from a model whose vocabulary is padded" "$keel" sample --checkpoint "$work/sft-bpe" --tokens 100 \
    --temperature 1 --top-k 0 --seed 3
expect_ok "generate from a model whose vocabulary is padded" "$keel" generate --checkpoint "$work/sft-bpe" --prompt "To be" \
    --max-tokens 100 --temperature 1 --top-k 0 --seed 3 --json
check "its text is what the tokens decode to, none of them a padding id" \
    '(lambda r: len(r["text"]) > 0 and (r["tokens"] == 100 or r["stop"] == "string"))(json.loads(open(sys.argv[1]).readline()))' "$work/out"
start_server "$work/sft-bpe"
post completions '{"prompt": "To be", "max_tokens": 100, "temperature": 1, "top_k": 0, "seed": 3}'
check "serve's completion from it is text too" 'len(json.load(open(sys.argv[1]))["choices"][0]["text"]) > 0' "$work/response.json"
stop_server
# Eval on the same validation windows (seq_len 16, one batch of 2) reproduces the run's last validation loss exactly.
expect_ok "eval on a dataset" "$keel" eval --checkpoint "$work/dsrun" --dataset "$work/ds" --seq-len 16 --batch-size 2 \
    --max-windows 2 --json
check "eval on the dataset equals the run's validation loss" \
    'json.load(open(sys.argv[1]))["loss"] == [r for r in map(json.loads, open(sys.argv[2])) if "val_loss" in r][-1]["val_loss"]' \
    "$work/out" "$work/dsrun/metrics.jsonl"
# A run trained with data.document_masking is evaluated with its documents kept apart, as its validation ran: the
# same loss; --no-document-masking attends across them (each validation window starts at a document's end-of-text).
expect_ok "train on the dataset with document masking" "$keel" train --config "$work/ds.toml" --out "$work/dsrun-masked" \
    --set data.document_masking=true
expect_ok "eval of the masked run" "$keel" eval --checkpoint "$work/dsrun-masked" --dataset "$work/ds" --seq-len 16 --batch-size 2 \
    --max-windows 2 --json
check "eval keeps a masked run's documents apart: its validation loss exactly" \
    '(lambda r, v: r["document_masking"] and r["loss"] == v)(json.load(open(sys.argv[1])), [r for r in map(json.loads, open(sys.argv[2])) if "val_loss" in r][-1]["val_loss"])' \
    "$work/out" "$work/dsrun-masked/metrics.jsonl"
cp "$work/out" "$work/masked-eval.json"
expect_ok "eval --no-document-masking" "$keel" eval --checkpoint "$work/dsrun-masked" --dataset "$work/ds" --seq-len 16 --batch-size 2 \
    --max-windows 2 --json --no-document-masking
check "without masking, another loss" '(lambda r, m: not r["document_masking"] and r["loss"] != m["loss"])(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' \
    "$work/out" "$work/masked-eval.json"
expect_error "--document-masking with llama.cpp's scoring" "--document-masking applies to the plain evaluation of a run" \
    "$keel" eval --checkpoint "$work/dsrun-masked" --dataset "$work/ds" --llama-cpp-scoring --document-masking
expect_error "eval on a split that does not exist" "--split must be \"val\" or \"train\" (got \"test\")" \
    "$keel" eval --checkpoint "$work/dsrun" --dataset "$work/ds" --split test
expect_error "eval on a dataset of another tokenizer" "was tokenised with tokenizer.json, not with the checkpoint's tokenizer (byte)" \
    "$keel" eval --checkpoint "$work/run" --dataset "$work/ds"
expect_error "prepare with shards too large for their header" "--shard-tokens must be 1 to 2147483647" \
    "$keel" data prepare --tokenizer "$work/tok.json" --input "$work/corpus" --out "$work/ds-huge" --shard-tokens 3000000000
usage "data bench of empty batches" "--batch-size must be positive" "$keel" data bench --dataset "$work/ds" --batch-size 0
usage "data bench of empty sequences" "--seq-len must be positive" "$keel" data bench --dataset "$work/ds" --seq-len 0
usage "data bench of no batches" "--batches must be positive" "$keel" data bench --dataset "$work/ds" --batches 0
expect_error "prepare refuses to overwrite a dataset" "already holds" \
    "$keel" data prepare --tokenizer "$work/tok.json" --input "$work/corpus" --out "$work/ds"
printf '{"text": "fine"}\n{"title": "no text here"}\n' >"$work/bad.jsonl"
expect_error "JSONL line without text" "$work/bad.jsonl: line 2" \
    "$keel" data prepare --tokenizer byte --input "$work/bad.jsonl" --out "$work/bad" --shard-tokens 4
# The directory the run made goes, with whatever it wrote before the second line failed.
[ ! -e "$work/bad" ] && pass "a failed prepare leaves no directory of its own behind" \
    || fail "a failed prepare leaves no directory of its own behind ($(ls -A "$work/bad"))"
shard=$(ls "$work"/ds/train_*.bin | head -1)
printf 'x' >>"$shard"
expect_error "shard whose size disagrees with its header" "header says" "$keel" train --config "$work/ds.toml" --out "$work/dsrun2"

# keel data warc: pywb's sample crawl (scripts/fetch_web_fixtures.sh fetches it) listed record by record; a copy
# cut short loses only the record it cuts, with a warning naming the file and the record's offset (212 whole gzip
# members precede the cut at byte 700,000, as Python's zlib counts them: decompressobj(31) member after member over
# the first 700,000 bytes, counting those that reach their end).
crawl="$here/../../data/pywb/sample_archive/warcs/iana.warc.gz"
expect_ok "data warc lists a crawl" "$keel" data warc "$crawl"
check "data warc lists its 343 records, the first response at offset 334 (2,258 bytes, status 200)" \
    '(lambda r: len(r) == 343 and (r[1]["offset"], r[1]["length"], r[1]["status"], r[1]["type"]) == (334, 2258, 200, "response"))([json.loads(l) for l in open(sys.argv[1])])' \
    "$work/out"
head -c 700000 "$crawl" >"$work/cut.warc.gz"
if "$keel" data warc "$work/cut.warc.gz" >"$work/out" 2>"$work/err" && grep -q "^warning: $work/cut.warc.gz: record at offset [0-9]* skipped: gzip member ends early" "$work/err" \
    && grep -q "^[0-9]* records read, 1 skipped$" "$work/err" && [ "$(wc -l <"$work/out")" -eq 212 ]; then
    pass "data warc on a truncated crawl: the cut record skipped with its offset, the 212 before it listed"
else
    fail "data warc on a truncated crawl: the cut record skipped with its offset, the others listed"
fi
usage "data warc with a record limit of 0" "--max-record-mb must be 1 to 1048576" "$keel" data warc --max-record-mb 0 "$crawl"
usage "data warc with a record limit beyond any record" "--max-record-mb must be 1 to 1048576" \
    "$keel" data warc --max-record-mb 9000000000000 "$crawl"
expect_error "data warc on a file that does not exist" "$work/missing.warc.gz: cannot read" "$keel" data warc "$work/missing.warc.gz"

# keel data extract: a page in windows-1251 (declared by <meta>) and pywb's crawl give their main text in UTF-8,
# without the menu; a missing input is one error naming it.
mkdir -p "$work/pages"
printf '<html><head><meta charset="windows-1251"><title>T</title></head><body><nav><a href="/">\xcc\xe5\xed\xfe</a></nav><article><p>\xcf\xf0\xe8\xe2\xe5\xf2, \xec\xe8\xf0!</p></article></body></html>' \
    >"$work/pages/ru.html"
expect_ok "data extract on HTML files and a crawl" "$keel" data extract "$work/pages" "$crawl" --out "$work/pages.jsonl"
grep -q "other response(s) passed over: not status 200, or not HTML" "$work/err" \
    && pass "data extract counts the crawl's responses that are not pages" || fail "data extract counts the crawl's responses that are not pages"
check "data extract decodes windows-1251, drops the menu, and lists the crawl's HTML pages with their URLs" \
    '(lambda r: r[0]["text"] == "Привет, мир!" and r[0]["title"] == "T" and any(x.get("url") == "http://www.iana.org/" and "IANA manages the DNS Root Zone" in x["text"] for x in r))([json.loads(l) for l in open(sys.argv[1])])' \
    "$work/pages.jsonl"
expect_error "data extract on a missing input" "$work/nothing.html: no such file or directory" \
    "$keel" data extract "$work/nothing.html" --out "$work/x.jsonl"
# A page named twice (its directory and itself) is read once, and the note says so.
expect_ok "data extract of a page named twice" "$keel" data extract "$work/pages" "$work/pages/ru.html" --out "$work/twice.jsonl"
[ "$(wc -l <"$work/twice.jsonl")" -eq 1 ] && grep -q "^note: 1 file(s) named more than once, read once" "$work/err" \
    && pass "a page named twice is extracted once, with a note" || fail "a page named twice is extracted once, with a note"
python3 -c 'import json, sys; f = open(sys.argv[1], "w"); f.write(json.dumps({"url": "https://example.org/a", "html": "<html lang=\"en\"><head><title>A</title><meta name=\"date\" content=\"2020-02-02\"></head><body><nav>Menu</nav><p>Fetched pages can come as JSON lines.</p></body></html>"}) + "\n")' "$work/fetched.jsonl"
expect_ok "data extract on JSONL with an html field" "$keel" data extract "$work/fetched.jsonl" --out "$work/fetched-text.jsonl"
check "data extract on JSONL keeps the URL and gives the text, declared language and date" \
    '(lambda r: (r["url"], r["text"], r["declared_language"], r["date"], r["title"]) == ("https://example.org/a", "Fetched pages can come as JSON lines.", "en", "2020-02-02", "A"))(json.loads(open(sys.argv[1]).readline()))' \
    "$work/fetched-text.jsonl"
# C4's and Dolma's naming (.json.gz) is JSON Lines too; a compressed file of no kind Keel reads is an error, not a page.
gzip -c "$work/fetched.jsonl" >"$work/fetched.json.gz"
expect_ok "data extract on .json.gz" "$keel" data extract "$work/fetched.json.gz" --out "$work/fetched-gz.jsonl"
check "it reads as the JSONL it holds" \
    'json.loads(open(sys.argv[1]).readline())["text"] == json.loads(open(sys.argv[2]).readline())["text"]' \
    "$work/fetched-gz.jsonl" "$work/fetched-text.jsonl"
gzip -c "$work/pages.jsonl" >"$work/gzipped.html"
expect_error "data extract on a gzip file named as HTML" "gzipped.html: compressed, but neither JSON Lines" \
    "$keel" data extract "$work/gzipped.html" --out "$work/x.jsonl"
gzip -c "$work/pages.jsonl" >"$work/pages.tar.gz"
expect_error "data extract on a compressed file of another kind" "pages.tar.gz: compressed, but neither JSON Lines" \
    "$keel" data extract "$work/pages.tar.gz" --out "$work/x.jsonl"
printf '{"url": "x"}\n' >"$work/nohtml.jsonl"
expect_error "data extract on JSONL without an html field" "$work/nohtml.jsonl: line 1: the JSON object has no \"html\" field" \
    "$keel" data extract "$work/nohtml.jsonl" --out "$work/x.jsonl"

# keel data extract --render: a page whose text only its script writes is rendered by headless Chromium; a page
# that hangs its browser, and a browser that crashes, cost that page and a warning, not the run.
mkdir -p "$work/js"
cat >"$work/js/app.html" <<'HTML'
<html><head><title>App</title></head><body><div id="app"></div>
<script>document.getElementById('app').innerHTML = '<article><p>' + ['Only', 'the', 'script', 'of', 'this', 'page', 'writes', 'its', 'text.'].join(' ') + '</p></article>';</script>
</body></html>
HTML
# (A browser start takes seconds on a busy machine: the page that must render gets a generous limit, and the page
# that hangs is judged on its own, so that it does not slow the other down.)
expect_ok "data extract --render" "$keel" data extract "$work/js" --out "$work/js.jsonl" --render --render-timeout 60
check "data extract --render gives the text the script wrote" \
    '[json.loads(l)["text"] for l in open(sys.argv[1])] == ["Only the script of this page writes its text."]' "$work/js.jsonl"
mkdir -p "$work/jshang"
printf '<html><body><div id="x"></div><script>while (true) {}</script></body></html>' >"$work/jshang/hang.html"
expect_ok "data extract --render with a page that hangs its browser" "$keel" data extract "$work/jshang" "$work/pages" \
    --out "$work/jshang.jsonl" --render --render-timeout 3
grep -q "hang.html: not rendered: the browser took more than 3 s and was stopped" "$work/err" && [ -s "$work/jshang.jsonl" ] \
    && pass "data extract --render stops a hung browser and goes on" || fail "data extract --render stops a hung browser and goes on"
printf '#!/bin/sh\nkill -SEGV $$\n' >"$work/crashing-browser" && chmod +x "$work/crashing-browser"
expect_ok "data extract --render with a browser that crashes" "$keel" data extract "$work/js" --out "$work/js2.jsonl" --render \
    --chromium "$work/crashing-browser"
grep -q "app.html: not rendered: the browser crashed (signal 11)" "$work/err" \
    && pass "data extract --render reports a crashed browser per page" || fail "data extract --render reports a crashed browser per page"
expect_error "data extract --render with a browser that is not there" "--chromium $work/no-browser: not an executable file" \
    "$keel" data extract "$work/js" --out "$work/js3.jsonl" --render --chromium "$work/no-browser"

# keel data filter: a good document is kept as written (other fields too), a short one and a list removed with
# datatrove's reasons, c4_quality's line drops rewrite the kept text; bad input leaves no output behind.
python3 - "$work/docs.jsonl" <<'PY'
import json, sys
good = ("The history of the town is long and varied, and it has been told many times by the people who live there. "
        "It was founded in the twelfth century by monks who wanted to have a place to pray and to work with their hands. "
        "Over time, the settlement grew into a market town with a church, a mill and several inns. "
        "Today it is known for its old bridge and the annual fair, which brings visitors from all over the country. "
        "The museum tells the story of the town and of the families that shaped it over the centuries.")
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"id": 1, "text": good + "\nPlease enable JavaScript to view this page."}) + "\n")
    f.write(json.dumps({"id": 2, "text": "Too short to keep."}) + "\n")
    f.write("\n")
    f.write(json.dumps({"id": 3, "text": "\n".join("- item %d" % i for i in range(80))}) + "\n")
PY
expect_ok "data filter on JSONL" "$keel" data filter "$work/docs.jsonl" --out "$work/kept.jsonl" --removed "$work/removed.jsonl" \
    --report "$work/filter-report.json" --rules gopher_repetition,gopher_quality,c4_quality,fineweb_quality
check "data filter keeps the good document without its JavaScript line, other fields intact, and names why the others went" \
    '(lambda k, r, rep: [d["id"] for d in k] == [1] and k[0]["text"].endswith("over the centuries.") and [(d["id"], d["filter"], d["filter_reason"]) for d in r] == [(2, "gopher_repetition", "top_2_gram"), (3, "gopher_repetition", "top_2_gram")] and rep["documents"] == 3 and rep["keptDocuments"] == 1)([json.loads(l) for l in open(sys.argv[1])], [json.loads(l) for l in open(sys.argv[2])], json.load(open(sys.argv[3])))' \
    "$work/kept.jsonl" "$work/removed.jsonl" "$work/filter-report.json"
grep -q "| gopher_repetition | (all) | 2 (66.7%)" "$work/out" && pass "data filter prints the per-rule table" || fail "data filter prints the per-rule table"
# --decisions names each document by its file and its own line there (docs.jsonl's third line is blank).
cp "$work/docs.jsonl" "$work/docs-again.jsonl"
expect_ok "data filter --decisions on two files" "$keel" data filter "$work/docs.jsonl" "$work/docs-again.jsonl" --out "$work/x.jsonl" \
    --decisions "$work/decisions.tsv" --rules gopher_quality,c4_quality
check "data filter --decisions gives each document's file and line in it, blank lines counted" \
    '(lambda rows: [r[:3] for r in rows] == [[f, n, rule] for f in sys.argv[2:4] for n in ["1", "2", "4"] for rule in ["gopher_quality", "c4_quality"]] and rows[0][3] == "keep" and rows[2][3] == "gopher_short_doc")([l.rstrip("\n").split("\t") for l in open(sys.argv[1])])' \
    "$work/decisions.tsv" "$work/docs.jsonl" "$work/docs-again.jsonl"
printf '{"text": "fine"}\n{"text": 3}\n' >"$work/badtext.jsonl"
rm -f "$work/bad-out.jsonl"
expect_error "data filter on a record whose text is not a string" "$work/badtext.jsonl: line 2: \"text\" is a number, not a string" \
    "$keel" data filter "$work/badtext.jsonl" --out "$work/bad-out.jsonl"
[ ! -e "$work/bad-out.jsonl" ] && pass "data filter on bad input writes no output" || fail "data filter on bad input writes no output"
expect_error "data filter with an unknown rule set" "no filter rule set named \"gopher\"" \
    "$keel" data filter "$work/docs.jsonl" --out "$work/x.jsonl" --rules gopher
expect_error "data filter with a bad threshold" "gopher_quality.min_doc_words: \"lots\" is not a number" \
    "$keel" data filter "$work/docs.jsonl" --out "$work/x.jsonl" --set gopher_quality.min_doc_words=lots
expect_error "data filter's language rule without its model" "language: no language model at $work/none.npz.xz" \
    "$keel" data filter "$work/docs.jsonl" --out "$work/x.jsonl" --set language.model="$work/none.npz.xz"
usage "data filter --removed-per-rule without --removed" "--removed-per-rule needs --removed" \
    "$keel" data filter "$work/docs.jsonl" --out "$work/x.jsonl" --removed-per-rule 3

# keel data pipeline: HTML pages and a JSONL file to byte shards. The German page goes (language), the copied page
# goes (dedup); a file whose results are lost is redone on the next run, the others are skipped, and the shards come
# out byte-identical; a changed setting or a bad configuration is refused.
mkdir -p "$work/site"
python3 - "$work/site" "$work/more.jsonl" <<'PY'
import json, sys
site, more = sys.argv[1], sys.argv[2]
def article(topic):
    return (f"The history of {topic} is long and varied, and it has been told many times by the people who live there. "
            f"It was founded in the twelfth century by monks who wanted to have a place to pray and to work with their hands. "
            f"Over time, the settlement grew into a market town with a church, a mill and several inns, and {topic} prospered. "
            f"Today it is known for its old bridge and the annual fair, which brings visitors from all over the country. "
            f"The museum tells the story of {topic} and of the families that shaped it over the centuries.")
german = ("Die Geschichte der Stadt ist lang und wechselvoll, und sie wurde schon oft von den Menschen erzählt, die dort leben. "
          "Sie wurde im zwölften Jahrhundert von Mönchen gegründet, die einen Ort zum Beten und zum Arbeiten suchten. "
          "Heute ist sie für ihre alte Brücke und den jährlichen Markt bekannt, der Besucher aus dem ganzen Land anzieht.")
page = "<html><head><title>{0}</title></head><body><nav><a href='/'>Home</a></nav><article><p>{1}</p></article></body></html>"
science = ("The experiment was designed to measure how quickly water cools in containers made of different materials. "
           "Each container was filled with the same amount of boiling water and placed in a room kept at a steady temperature. "
           "Readings were taken every five minutes with a digital thermometer, and the results were written down in a notebook. "
           "The metal container lost heat fastest, while the one wrapped in wool kept the water warm for almost two hours. "
           "These results show that the material of a container matters a great deal when we want to keep a drink hot.")
cooking = ("To make the bread, mix the flour with the salt and the yeast in a large bowl before adding any of the warm water. "
           "Knead the dough on a floured table for about ten minutes until it feels smooth and springs back when pressed. "
           "Leave it covered in a warm place for an hour, then shape it into a loaf and let it rise again on the baking tray. "
           "Bake it in a hot oven for thirty minutes, until the crust is brown and the loaf sounds hollow when you tap it. "
           "Let the bread cool on a rack before cutting it, or the inside will be heavy and the slices will tear apart.")
for name, text in [("a", article("Oldbridge")), ("b", science), ("c", article("Oldbridge")), ("d", german)]:
    open(f"{site}/{name}.html", "w").write(page.format(name, text))
with open(more, "w") as f:
    f.write(json.dumps({"id": 7, "text": cooking}) + "\n")
PY
cat >"$work/pipeline.toml" <<TOML
[input]
paths = ["site", "more.jsonl"]
[filter]
settings = ["language.model=$here/../../data/langid/model.npz.xz"]
[output]
dir = "corpus"
tokenizer = "byte"
val_fraction = 0.0
TOML
expect_ok "data pipeline on pages and JSONL" "$keel" data pipeline --config "$work/pipeline.toml"
check "data pipeline keeps three of five documents: the German page filtered, the copied page deduplicated" \
    '(lambda r: r["pages"] == 5 and [(s["name"], s["documents"]) for s in r["stages"]] == [("extract", 5), ("filter", 4), ("deduplicate", 3), ("tokenize", 3)] and r["filter"]["removed"]["language"]["language"]["documents"] == 1 and r["trainTokens"] > 1000 and [s["tokens"] for s in r["stages"]][1:] == [r["stages"][1]["bytes"], r["stages"][2]["bytes"], r["trainTokens"]] and r["stages"][2]["tokens"] == r["trainTokens"] - 3)(json.load(open(sys.argv[1])))' \
    "$work/corpus/pipeline-report.json"
cp "$work/corpus/train_000000.bin" "$work/first-shard.bin"
rm "$work"/corpus/work/filtered/b.html-*.json
expect_ok "data pipeline resumed after losing one file's results" "$keel" data pipeline --config "$work/pipeline.toml"
grep -q "resume: 4 of 5 file(s) done by an earlier run" "$work/err" && cmp -s "$work/first-shard.bin" "$work/corpus/train_000000.bin" \
    && pass "data pipeline redoes only the unfinished file and writes the same shards" \
    || fail "data pipeline redoes only the unfinished file and writes the same shards"
# New shards are made aside: a tokenize stage that fails (here a file-size limit standing in for a full disk, ~2 KB of
# shards against 1 KB allowed) leaves the earlier dataset whole; done again without the limit, the new one replaces it.
sha256sum "$work"/corpus/manifest.json "$work"/corpus/*.bin >"$work/dataset.sha"
(ulimit -f 1; "$keel" data pipeline --config "$work/pipeline.toml" --set output.val_fraction=0.5) >"$work/out" 2>"$work/err"
status=$?
[ "$status" -eq 1 ] && grep -q "^Error: .*File too large" "$work/err" && sha256sum --quiet -c "$work/dataset.sha" \
    && [ ! -e "$work/corpus/work/dataset.partial" ] \
    && pass "a data pipeline whose shards cannot be written keeps the earlier dataset" \
    || fail "a data pipeline whose shards cannot be written keeps the earlier dataset (exit $status)"
expect_ok "data pipeline with another validation split" "$keel" data pipeline --config "$work/pipeline.toml" --set output.val_fraction=0.5
check "the new dataset replaced the earlier one" \
    '(lambda m: m["val"]["documents"] > 0 and len(m["train"]["shards"]) == 1)(json.load(open(sys.argv[1])))' "$work/corpus/manifest.json"
expect_error "data pipeline resumed with other settings" "was made with another rules" \
    "$keel" data pipeline --config "$work/pipeline.toml" --set filter.rules=gopher_quality --set filter.settings=[]
expect_error "data pipeline with a misspelt key" "unknown key 'output.tokeniser'" \
    "$keel" data pipeline --config "$work/pipeline.toml" --set output.tokeniser=byte
expect_error "data pipeline with a tokenizer that is not there, before any work" "tokenizer: $work/nope.json: no such file" \
    "$keel" data pipeline --config "$work/pipeline.toml" --set output.dir="$work/corpus2" --set output.tokenizer="$work/nope.json"
[ ! -e "$work/corpus2" ] && pass "data pipeline with a bad tokenizer leaves nothing behind" || fail "data pipeline with a bad tokenizer leaves nothing behind"
# Settings the deduplication or the shards would trip on hours later are refused before any work.
expect_error "data pipeline with no bands" "dedup.memory_mb: shingle, bands and rows must be positive (got 5, 0, 20)" \
    "$keel" data pipeline --config "$work/pipeline.toml" --set output.dir="$work/corpus3" --set dedup.bands=0 --set dedup.shingle=5 --set dedup.rows=20
expect_error "data pipeline with shards too large for their header" "output.shard_tokens must be 1 to 2147483647" \
    "$keel" data pipeline --config "$work/pipeline.toml" --set output.dir="$work/corpus3" --set output.shard_tokens=3000000000
[ ! -e "$work/corpus3" ] && pass "a refused data pipeline leaves nothing behind" || fail "a refused data pipeline leaves nothing behind"
printf '[input]\npaths = ["site"]\n[output]\ndir = "x"\n' >"$work/notok.toml"
expect_error "data pipeline without a tokenizer" "output.tokenizer is missing" "$keel" data pipeline --config "$work/notok.toml"

# A file the user cannot read: one error naming it (as root, permissions do not stop reads, so drop to nobody).
cp "$work/corpus/doc1.txt" "$work/secret.txt"
chmod 000 "$work/secret.txt"
as_user=()
if [ "$(id -u)" -eq 0 ]; then
    chmod 755 "$work" && chmod -R a+rX "$work/corpus" "$work/tiny.toml" && mkdir -m 777 "$work/nobody"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
else
    mkdir "$work/nobody"
fi
expect_error "unreadable data file" "cannot read $work/secret.txt: permission denied" \
    "${as_user[@]}" "$keel" train --config "$work/tiny.toml" --out "$work/nobody/run" --set "data.paths=[\"$work/secret.txt\"]"

# (The corpus directory now holds the pipeline's dataset: the runs below read its documents alone.)
written=(--set "data.paths=[\"$work/corpus/doc1.txt\", \"$work/corpus/doc2.txt\", \"$work/corpus/doc3.txt\"]")
# Counts that overflowed or filled the memory are refused by name before any work.
usage "collectives with no timed calls" "--iterations must be positive (got 0)" "$keel" collectives --iterations 0
usage "collectives with a timeout that is not a number" "--timeout must be a positive number of seconds (got nan)" "$keel" collectives --timeout nan
usage "bench with too many steps" "--steps must be from 1 to 1000000" "$keel" bench --preset small --steps 9223372036854775807
usage "data bench with windows too long" "--batch-size × --seq-len must be at most" \
    "$keel" data bench --dataset "$work/corpus" --batches 1 --seq-len 9223372036854775807
usage "sample past its bound" "--tokens must be from 0 to 1048576" "$keel" sample --checkpoint "$work/run" --tokens 9999999999999
usage "sample at an infinite temperature" "--temperature must be a number that is not negative" \
    "$keel" sample --checkpoint "$work/run" --temperature=inf
expect_error "train with a micro-batch past its bound" "training.batch_size (4611686018427387904) × training.seq_len" \
    "$keel" train --config "$work/tiny.toml" --out "$work/huge" --set training.batch_size=4611686018427387904 "${written[@]}"
usage "plan --plot without a sweep" "--plot charts a sweep: give --sweep-gpus too" "$keel" plan --model gpt2-124m --plot "$work/x.svg"
usage "bench --processes without --machine" "--processes applies to --machine" "$keel" bench --processes 2
expect_error "an out-of-range number in --set" "--set training.steps=9223372036854775808: 9223372036854775808 is out of range" \
    "$keel" train --config "$work/tiny.toml" --out "$work/huge" --set training.steps=9223372036854775808
printf '[training.sub]\nsteps = 3\n' >"$work/sub.toml"
expect_error "a table inside a section" "\[training.sub\] is a table inside \[training\]" "$keel" train --config "$work/sub.toml" --out "$work/huge"
usage "two starting points" "--init-from and --set training.init_from both name the starting weights" \
    "$keel" train --config "$work/tiny.toml" --out "$work/huge" --init-from "$work/run" --set training.init_from=\"$work/run\"
expect_ok "eval with a batch larger than its windows" "$keel" eval --checkpoint "$work/run" "$work/corpus/doc1.txt" --seq-len 8 \
    --batch-size 100000000 --max-windows 1

# Failed writes. Output that cannot be written is an error, not success, and not a crash; a diagnostic that cannot be
# written does not stop the work; a file-size limit fails the write with its reason and leaves no temporary behind; a
# destination that is not a regular file is not replaced.
printf 'to be or not\n' >"$work/words.txt"
"$keel" tokenizer encode --tokenizer byte --input "$work/words.txt" >/dev/full 2>"$work/err"
status=$?
[ "$status" -eq 1 ] && grep -q "^Error: cannot write the output: No space left on device" "$work/err" && ! grep -q "Fatal error" "$work/err" \
    && pass "encode to a full disk fails with its reason" || fail "encode to a full disk fails with its reason (exit $status)"
"$keel" sample --checkpoint "$work/run" --tokens 5 >/dev/full 2>"$work/err"
status=$?
[ "$status" -eq 1 ] && grep -q "^Error: cannot write the output: No space left on device" "$work/err" \
    && pass "sample to a full disk fails with its reason" || fail "sample to a full disk fails with its reason (exit $status)"
"$keel" train --config "$work/tiny.toml" --out "$work/log-full" --set training.steps=2 "${written[@]}" >/dev/null 2>/dev/full
status=$?
[ "$status" -eq 0 ] && pass "training whose log goes to a full disk" || fail "training whose log goes to a full disk (exit $status)"
[ -d "$work/log-full/checkpoints/step_00000002" ] && pass "training whose log cannot be written still trains" \
    || fail "training whose log cannot be written still trains"
mkdir "$work/limited"
(cd "$work/limited" && ulimit -f 16 && "$keel" export gguf --checkpoint "$work/llamarun" --type f32 --out "$work/limited/m.gguf") >"$work/out" 2>"$work/err"
status=$?
[ "$status" -eq 1 ] && grep -q "^Error: cannot write $work/limited/m.gguf: File too large" "$work/err" && [ -z "$(ls -A "$work/limited")" ] \
    && pass "export past a file-size limit fails with its reason and leaves nothing" \
    || fail "export past a file-size limit fails with its reason and leaves nothing (exit $status: $(ls -A "$work/limited"))"
(ulimit -f 1 && "$keel" train --config "$work/tiny.toml" --out "$work/metrics-limit" --set training.steps=30 --set checkpoint.every=0 "${written[@]}") \
    >"$work/out" 2>"$work/err"
status=$?
[ "$status" -ne 0 ] && grep -q "^Error: cannot write $work/metrics-limit/metrics.jsonl: File too large" "$work/err" \
    && [ "$(tail -c 1 "$work/metrics-limit/metrics.jsonl" | od -An -c | tr -d ' ')" = '\n' ] \
    && pass "a metrics log that cannot grow stops the run naming it, whole records kept" \
    || fail "a metrics log that cannot grow stops the run naming it, whole records kept (exit $status)"
mkfifo "$work/pipe.gguf"
expect_error "export onto a named pipe" "cannot write $work/pipe.gguf: it exists and is not a regular file (a named pipe)" \
    "$keel" export gguf --checkpoint "$work/llamarun" --type f32 --out "$work/pipe.gguf"
[ -p "$work/pipe.gguf" ] && pass "the named pipe is left as it was" || fail "the named pipe is left as it was"
: >"$work/plainfile"
expect_error "an output directory under a file" "cannot create directory $work/plainfile/run/checkpoints: $work/plainfile: it exists and is not a directory" \
    "$keel" train --config "$work/tiny.toml" --out "$work/plainfile/run" --set training.steps=1 "${written[@]}"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
