#!/usr/bin/env bash
# End-to-end check of Keel's Hugging Face export against transformers.
#
#   bash scripts/hf_check/run_export_check.sh
#   KEEL=/path/to/keel bash scripts/hf_check/run_export_check.sh
#
# For each case (gpt2; llama with grouped-query attention, n_head=4 n_kv_head=2) it:
#   1. trains a small model (2 layers, d_model 64, max_seq_len 64) for $STEPS steps on
#      data/shakespeare into a temp dir, and checks that the newest checkpoint is at step
#      $STEPS and that the validation loss went down (so the weights are trained, not
#      just initialised);
#   2. exports it with `keel export hf`;
#   3. writes Keel's logits for a fixed text with `keel logits`;
#   4. runs check_export.py (transformers, float32, eager attention) on the export and
#      Keel's logits.
# Prints one line per case with the relative errors and PASS/FAIL; exits 1 if any case
# fails (including a failure to train, export or load), 0 if all pass.
#
# Environment:
#   KEEL      keel binary (default: .build/release/keel in the repo root)
#   STEPS     training steps per case (default 30)
#   TOL       relative-error tolerance passed to check_export.py (default 1e-4)
#   KEEP_TMP  set to 1 to keep the temp dir (runs, exports, logits, logs)
# The virtualenv .venv-hf is created with setup.sh if it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KEEL="${KEEL:-$ROOT/.build/release/keel}"
STEPS="${STEPS:-30}"
TOL="${TOL:-1e-4}"
VPY="$ROOT/.venv-hf/bin/python"
DATA="$ROOT/data/shakespeare"
# 63 bytes of ASCII; Keel's byte tokenizer gives one token per byte (no BOS), which
# stays within max_seq_len 64 and covers almost every position.
TEXT="ROMEO: But soft, what light through yonder window breaks? It is"

log() { echo "[export-check] $*"; }

if [ ! -x "$KEEL" ]; then
    log "error: keel binary not found or not executable: $KEEL (set KEEL=...)"
    exit 2
fi
KEEL="$(cd "$(dirname "$KEEL")" && pwd)/$(basename "$KEEL")"
if [ ! -d "$DATA" ]; then
    log "error: corpus not found: $DATA"
    exit 2
fi
if ! { [ -x "$VPY" ] && "$VPY" -c 'import torch, transformers' >/dev/null 2>&1; }; then
    log ".venv-hf missing or incomplete; running setup.sh"
    bash "$ROOT/scripts/hf_check/setup.sh"
fi
log "keel: $KEEL"
log "$("$VPY" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/keel-export-check.XXXXXX")"
if [ "${KEEP_TMP:-0}" = 1 ]; then
    log "keeping temp dir: $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
fi

# write_config NAME ARCH N_KV_HEAD D_FF   (N_KV_HEAD "-" = not set, e.g. for gpt2)
write_config() {
    local kv=""
    [ "$3" = "-" ] || kv="n_kv_head = $3"
    cat > "$TMP/$1.toml" <<EOF
[model]
arch = "$2"
n_layer = 2
n_head = 4
$kv
d_model = 64
d_ff = $4
max_seq_len = 64

[data]
paths = ["$DATA"]

[training]
steps = $STEPS
batch_size = 4
seq_len = 64
lr = 3e-3
eval_every = $STEPS
eval_batches = 4

[checkpoint]
every = $STEPS

[sample]
tokens = 0
EOF
}

# check_trained RUN_DIR: the newest checkpoint is at step $STEPS and val loss went down.
check_trained() {
    "$VPY" - "$1" "$STEPS" <<'PY'
import glob, json, os, sys
run, steps = sys.argv[1], int(sys.argv[2])
ckpts = sorted(glob.glob(os.path.join(run, "checkpoints", "step_*")))
if not ckpts:
    sys.exit("no checkpoint written")
# A sharded checkpoint's manifest.json holds its state; a consolidated one has state.json.
manifest = os.path.join(ckpts[-1], "manifest.json")
step = json.load(open(manifest))["state"]["step"] if os.path.exists(manifest) \
    else json.load(open(os.path.join(ckpts[-1], "state.json")))["step"]
if step != steps or steps <= 0:
    sys.exit(f"newest checkpoint is at step {step}, expected {steps}")
vals = [r["val_loss"] for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))
        if "val_loss" in r]
if len(vals) < 2 or not vals[-1] < vals[0]:
    sys.exit(f"validation loss did not go down: {vals}")
print(f"step {step}, val loss {vals[0]:.4f} -> {vals[-1]:.4f}")
PY
}

# run_case NAME ARCH N_KV_HEAD D_FF -> appends a summary line to $TMP/summary
run_case() {
    local name="$1" dir="$TMP/$1" out rc line
    mkdir -p "$dir"
    write_config "$name" "$2" "$3" "$4"
    fail() {   # fail REASON LOGFILE: record the failure and show the log
        line="$(printf '%-10s FAIL  %s' "$name" "$1")"
        echo "$line" >> "$TMP/summary"; log "$line"
        if [ "${KEEP_TMP:-0}" = 1 ]; then log "log: $2"; else sed 's/^/    /' "$2"; fi
    }
    log "== $name: arch=$2 n_head=4 n_kv_head=$3 d_ff=$4, $STEPS steps"
    if ! "$KEEL" train --config "$TMP/$name.toml" --out "$dir/run" > "$dir/train.log" 2>&1; then
        fail "keel train failed" "$dir/train.log"; return
    fi
    if ! out="$(check_trained "$dir/run" 2>&1)"; then
        echo "$out" >> "$dir/train.log"; fail "model not trained: $out" "$dir/train.log"; return
    fi
    log "trained: $out"
    if ! "$KEEL" export hf --checkpoint "$dir/run" --out "$dir/hf" > "$dir/export.log" 2>&1; then
        fail "keel export hf failed" "$dir/export.log"; return
    fi
    if ! "$KEEL" logits --checkpoint "$dir/run" --text "$TEXT" --out "$dir/logits.safetensors" \
            > "$dir/logits.log" 2>&1; then
        fail "keel logits failed" "$dir/logits.log"; return
    fi
    rc=0
    "$VPY" "$ROOT/scripts/hf_check/check_export.py" "$dir/hf" "$dir/logits.safetensors" --tol "$TOL" \
        > "$dir/check.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        fail "check_export.py exit $rc (load/format error)" "$dir/check.log"; return
    fi
    sed 's/^/    /' "$dir/check.log"
    # The export's tokenizer too: transformers continues a prompt greedily as keel generate does.
    local greedy=match
    if ! "$KEEL" generate --checkpoint "$dir/run" --prompt "ROMEO:" --max-tokens 16 --temperature 0 \
            > "$dir/generated.txt" 2> "$dir/generate.log"; then
        fail "keel generate failed" "$dir/generate.log"; return
    fi
    "$VPY" "$ROOT/scripts/hf_check/check_generation.py" "$dir/hf" "ROMEO:" "$dir/generated.txt" > "$dir/greedy.log" 2>&1 \
        || { greedy=DIFFER; rc=1; }
    sed 's/^/    /' "$dir/greedy.log"
    local rn rmax am
    rn="$(sed -n 's/^||keel - hf|| \/ ||hf|| *//p' "$dir/check.log")"
    rmax="$(sed -n 's/^max|keel - hf| \/ max|hf| *//p' "$dir/check.log")"
    am="$(sed -n 's/^argmax agreement *//p' "$dir/check.log")"
    line="$(printf '%-10s %s  rel err ||d||/||hf|| %s, max|d|/max|hf| %s (tol %s), argmax agreement %s, greedy text %s' \
        "$name" "$([ "$rc" -eq 0 ] && echo PASS || echo FAIL)" "${rn:-?}" "${rmax:-?}" "$TOL" "${am:-?}" "$greedy")"
    echo "$line" >> "$TMP/summary"
    log "$line"
}

: > "$TMP/summary"
run_case gpt2 gpt2 - 128
run_case llama-gqa llama 2 128

echo
log "summary:"
sed 's/^/  /' "$TMP/summary"
if grep -q ' FAIL ' "$TMP/summary"; then
    log "RESULT: FAIL"
    exit 1
fi
log "RESULT: PASS ($(wc -l < "$TMP/summary") cases)"
