"""Greedy generation of a Keel export with transformers, against `keel generate --temperature 0`.

Usage: check_generation.py EXPORT_DIR PROMPT KEEL_OUTPUT [--tokens N]

Loads EXPORT_DIR with AutoTokenizer and AutoModelForCausalLM (float32), continues PROMPT greedily for N tokens
(default 16) and compares the text with KEEL_OUTPUT, a file holding what `keel generate --prompt PROMPT
--max-tokens N --temperature 0` printed (the prompt, the continuation and a line end). Bytes that are not UTF-8 compare as
U+FFFD on both sides. Exit 0 when they match, 1 when not, 2 when the directory does not load.
"""
import argparse
import sys

import torch
import transformers

parser = argparse.ArgumentParser()
parser.add_argument("export_dir")
parser.add_argument("prompt")
parser.add_argument("keel_output")
parser.add_argument("--tokens", type=int, default=16)
args = parser.parse_args()
try:
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.export_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.export_dir, dtype=torch.float32).eval()
except Exception as error:  # a directory that does not load is its own failure
    print(f"cannot load {args.export_dir}: {error}")
    sys.exit(2)
ids = tokenizer(args.prompt, return_tensors="pt").input_ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=args.tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
theirs = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
printed = open(args.keel_output, "rb").read()
printed = printed[:-1] if printed.endswith(b"\n") else printed  # the line end generate prints after the text
prompt = args.prompt.encode()
if not printed.startswith(prompt):
    print(f"keel's output does not start with the prompt: {printed[:80]!r}")
    sys.exit(1)
ours = printed[len(prompt):].decode("utf-8", "replace")
print(f"tokenizer {type(tokenizer).__name__}, prompt ids {ids[0].tolist()}")
print(f"transformers: {theirs!r}")
print(f"keel:         {ours!r}")
sys.exit(0 if theirs == ours else 1)
