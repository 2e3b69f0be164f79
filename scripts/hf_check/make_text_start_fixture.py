"""Records which token Hugging Face's `tokenizer(text)` puts before a text, for the tokenizer.json post-processors
and tokenizer_config.json flags Keel reads (`TokenizerSettings.beginningOfTextToken(in:)`), as Tests/Reference/text_start.json.

    .venv-hf/bin/python scripts/hf_check/make_text_start_fixture.py [OUT]     (OUT: Tests/Reference/text_start.json)

(transformers alone is enough: `pip install transformers`.) Each case is the tokenizer of Tests/Reference/dpo_trl with
its `post_processor` replaced and keys added to its tokenizer_config.json; transformers 5 loads the directory with
AutoTokenizer and encodes a text, and a string prompt with its completion (what TRL's trainers encode for string
data). The post-processor decides, whatever `add_bos_token` says. (Keel reads `add_bos_token` only for a tokenizer.json
without a post-processor, as GGUF imports wrote them before they wrote one; transformers adds nothing there, and that
case is Keel's own, tested without this fixture.)
"""
import json
import os
import shutil
import sys
import tempfile

import transformers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "Tests", "Reference", "dpo_trl", "model")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "Tests", "Reference", "text_start.json")

START = {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}
A, B = {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}
SPECIAL = {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}}
WITH_START = {"type": "TemplateProcessing", "single": [START, A], "pair": [START, A, B], "special_tokens": SPECIAL}
WITHOUT = {"type": "TemplateProcessing", "single": [A], "pair": [A, B], "special_tokens": {}}
CASES = [
    ("no start", WITHOUT, {}),
    ("template with a start", WITH_START, {}),
    ("template with a start, add_bos_token false", WITH_START, {"bos_token": "<|im_start|>", "add_bos_token": False}),
    ("template without, add_bos_token true", WITHOUT, {"bos_token": "<|im_start|>", "add_bos_token": True}),
    ("sequence of ByteLevel and a template with a start",
     {"type": "Sequence", "processors": [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                          "use_regex": True}, WITH_START]}, {}),
    ("a start spelled otherwise than in the vocabulary, given by its id",
     {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, A],
      "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, A, B],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [2], "tokens": ["<s>"]}}}, {}),
    ("ByteLevel alone, add_bos_token true",
     {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
     {"bos_token": "<|im_start|>", "add_bos_token": True}),
]
TEXT, PROMPT, COMPLETION = "Hello there, world.", "Question: what is the sea?", " It is water."

cases = []
for name, processor, config_keys in CASES:
    directory = tempfile.mkdtemp()
    try:
        tokenizer_json = json.load(open(os.path.join(SOURCE, "tokenizer.json")))
        tokenizer_json["post_processor"] = processor
        json.dump(tokenizer_json, open(os.path.join(directory, "tokenizer.json"), "w"))
        config = json.load(open(os.path.join(SOURCE, "tokenizer_config.json")))
        config.update(config_keys)
        json.dump(config, open(os.path.join(directory, "tokenizer_config.json"), "w"))
        tokenizer = AutoTokenizer.from_pretrained(directory)
        cases.append({"name": name, "post_processor": processor, "config": config_keys,
                      "text": tokenizer(TEXT)["input_ids"], "prompt_completion": tokenizer(PROMPT + COMPLETION)["input_ids"]})
    finally:
        shutil.rmtree(directory)
json.dump({"transformers": transformers.__version__, "text": TEXT, "prompt": PROMPT, "completion": COMPLETION,
           "cases": cases}, open(OUT, "w"), indent=1)
print(f"wrote {OUT}: " + "; ".join(f"{c['name']}: {c['text'][:2]}…" for c in cases))
