"""Writes the Hugging Face directories `keel import hf` is tested on (Tests/Reference/hf_import/), each made by
`transformers` itself: a model built from a config (weights drawn at a scale that makes every logit count),
`save_pretrained`, a tokenizer trained by `tokenizers` and saved by `transformers`, and `logits.safetensors`:
transformers' own float32 logits (eager attention) and token ids for the text in OUT/text.txt.

    .venv-hf/bin/python scripts/hf_check/make_import_fixtures.py [OUT]     (OUT: Tests/Reference/hf_import)

Cases:
  gpt2        GPT2LMHeadModel, tied head; the tokenizer as GPT-2's vocab.json + merges.txt only
  llama-gqa   LlamaForCausalLM, 4 query heads sharing 2 kv heads, untied head, rope_theta 500000; saved in bfloat16
              as two shards with model.safetensors.index.json
  llama-tied  LlamaForCausalLM with tie_word_embeddings (as SmolLM2), a tokenizer that splits digits (Digits +
              ByteLevel, as SmolLM2's), ChatML special tokens and a chat template in tokenizer_config.json
"""
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Reference"))
import safetensors_np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Tests", "Reference", "hf_import")
TEXT = ("ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun. "
        "Arise, fair sun, in 1597 and 1599!")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def training_text():
    directory = os.path.join(ROOT, "data", "shakespeare")
    names = sorted(n for n in os.listdir(directory) if n.endswith(".txt"))[:2]
    return [open(os.path.join(directory, n), encoding="utf-8").read()[:200_000] for n in names]


def train_tokenizer(size, digits, specials):
    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) if digits else byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(training_text(), trainer)
    return tokenizer


def scale_weights(model, seed):
    """Weights of order one (norms near one), so that the logits depend on every tensor."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and ("norm" in name or "ln_" in name) and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))


def save_logits(directory, model_class, fast):
    # The model as transformers loads the directory (bfloat16 weights upcast to float32).
    model = model_class.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    ids = fast(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy().astype(np.float32)
    safetensors_np.save_file({"tokens": np.array(ids, dtype=np.int32), "logits": logits},
                             os.path.join(directory, "logits.safetensors"))
    print(f"{directory}: {len(ids)} tokens, logits {logits.shape}")


def make(name, config, model_class, tokenizer, chat_template=None, dtype=None, shard=None, slow_files_only=False):
    directory = os.path.join(OUT, name)
    shutil.rmtree(directory, ignore_errors=True)
    torch.manual_seed(0)
    model = model_class(config)
    scale_weights(model, seed=len(name))
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(directory, max_shard_size=shard) if shard else model.save_pretrained(directory)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>" if slow_files_only else "<|im_end|>")
    if chat_template:
        fast.chat_template = chat_template
    if slow_files_only:
        tokenizer.model.save(directory)  # vocab.json and merges.txt, as GPT-2's repository has them
    else:
        fast.save_pretrained(directory)
    save_logits(directory, model_class, fast)


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "text.txt"), "w", encoding="utf-8") as f:
        f.write(TEXT)
    gpt2_tokenizer = train_tokenizer(320, digits=False, specials=["<|endoftext|>"])
    make("gpt2", GPT2Config(vocab_size=320, n_embd=32, n_layer=2, n_head=4, n_positions=256, bos_token_id=0, eos_token_id=0),
         GPT2LMHeadModel, gpt2_tokenizer, slow_files_only=True)
    llama_tokenizer = train_tokenizer(300, digits=False, specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    make("llama-gqa", LlamaConfig(vocab_size=304, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                  rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                  bos_token_id=1, eos_token_id=2),
         LlamaForCausalLM, llama_tokenizer, dtype=torch.bfloat16, shard="40KB")
    smol_tokenizer = train_tokenizer(300, digits=True, specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    make("llama-tied", LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                                   rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   bos_token_id=1, eos_token_id=2),
         LlamaForCausalLM, smol_tokenizer, chat_template=CHATML)


if __name__ == "__main__":
    main()
