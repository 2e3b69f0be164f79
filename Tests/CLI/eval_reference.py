#!/usr/bin/env python3
"""The mean next-token loss that `keel eval` must report, computed by the float64 NumPy reference model.

  eval_reference.py CHECKPOINT_DIR WEIGHTS TEXT_FILE SEQ_LEN

WEIGHTS is the checkpoint's model as one safetensors file (`keel checkpoint convert CHECKPOINT_DIR --out WEIGHTS`);
the model's shape comes from the checkpoint's manifest.json.

For a checkpoint with the byte-level tokenizer: the file's ids are its bytes followed by end-of-text
(256), cut into windows of SEQ_LEN + 1 tokens that start every SEQ_LEN tokens. Prints the loss.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Reference"))
import reference  # noqa: E402
import safetensors_np  # noqa: E402

checkpoint, weights, text, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(os.path.join(checkpoint, "manifest.json")) as f:
    cfg = reference.Config(json.load(f)["model"])
params = reference.load_params(cfg, safetensors_np.load_file(weights))
with open(text, "rb") as f:
    ids = list(f.read()) + [256]
windows = np.array([ids[w * length: w * length + length + 1] for w in range((len(ids) - 1) // length)])
loss, _, _ = reference.loss_and_grads(cfg, params, windows, need_grads=False)
print(f"{loss:.9f}")
