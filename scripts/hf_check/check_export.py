#!/usr/bin/env python3
"""Check a Keel Hugging Face export against transformers.

    .venv-hf/bin/python scripts/hf_check/check_export.py EXPORT_DIR LOGITS_FILE [--tol 1e-4]

EXPORT_DIR   a model directory written by Keel's exporter (config.json + *.safetensors)
LOGITS_FILE  a safetensors file written by Keel with
               tokens  I32 [T]     (a leading batch dim of 1 is also accepted)
               logits  F32 [T, V]  (Keel's logits for those tokens; [1, T, V] accepted)

Loads EXPORT_DIR with transformers.AutoModelForCausalLM (float32, eager attention), fails
if any checkpoint tensor was missing, unexpected or of the wrong shape, runs it on the
tokens and prints
    max |a-b|, ||a-b|| / ||b||, max|a-b| / max|b|     (a = Keel, b = transformers)
Exit status: 0 if both relative errors are <= tol, 1 if not, 2 on a loading/format error.
"""

import argparse
import os
import sys
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # local directories only; never reach for the hub

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Reference"))
import safetensors_np  # noqa: E402
from hf_loading import load_float32  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir")
    ap.add_argument("logits_file")
    ap.add_argument("--tol", type=float, default=1e-4, help="max allowed relative error (default 1e-4)")
    a = ap.parse_args()

    import torch

    try:
        data = safetensors_np.load_file(a.logits_file)
        tokens = np.asarray(data["tokens"])
        keel = np.asarray(data["logits"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as e:
        print(f"error: cannot read {a.logits_file}: {e!r}")
        return 2
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if keel.ndim == 3 and keel.shape[0] == 1:
        keel = keel[0]
    if tokens.ndim != 1 or keel.ndim != 2 or keel.shape[0] != tokens.shape[0]:
        print(f"error: expected tokens [T] and logits [T, V], got {tokens.shape} and {keel.shape}")
        return 2

    if not os.path.isfile(os.path.join(a.export_dir, "config.json")):
        print(f"error: {a.export_dir} has no config.json")
        return 2
    try:
        model, info = load_float32(a.export_dir)
    except Exception as e:  # noqa: BLE001 - report any loading failure as such
        print(f"error: transformers could not load {a.export_dir}: {type(e).__name__}: {e}")
        return 2
    problems = {k: sorted(v) for k, v in info.items()
                if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    cfg = model.config
    print(f"loaded {type(model).__name__} (model_type {cfg.model_type}, vocab {cfg.vocab_size}, "
          f"layers {cfg.num_hidden_layers}, tied embeddings {bool(getattr(cfg, 'tie_word_embeddings', False))})")
    if problems:
        for k, v in problems.items():
            print(f"error: {k}: {v}")
        print("error: the checkpoint did not load cleanly (missing tensors are randomly initialized)")
        return 2
    if keel.shape[1] != cfg.vocab_size:
        print(f"error: logits have vocab {keel.shape[1]}, model has {cfg.vocab_size}")
        return 2
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        print("error: token id out of range")
        return 2

    with torch.no_grad():
        ids = torch.from_numpy(tokens.astype(np.int64))[None, :]
        hf = model(input_ids=ids).logits[0].double().numpy()       # [T, V]

    d = np.abs(keel - hf)
    max_abs = float(d.max())
    rel_norm = float(np.linalg.norm(keel - hf) / np.linalg.norm(hf))
    rel_max = float(d.max() / np.abs(hf).max())
    argmax_agree = float((keel.argmax(-1) == hf.argmax(-1)).mean())
    print(f"tokens {tokens.shape[0]}, vocab {keel.shape[1]}")
    print(f"max |keel - hf|              {max_abs:.6e}")
    print(f"||keel - hf|| / ||hf||       {rel_norm:.6e}")
    print(f"max|keel - hf| / max|hf|     {rel_max:.6e}")
    print(f"argmax agreement             {argmax_agree:.4f}")
    ok = rel_norm <= a.tol and rel_max <= a.tol
    print(f"{'PASS' if ok else 'FAIL'} (tolerance {a.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
