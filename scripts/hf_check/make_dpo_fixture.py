"""Runs TRL's DPOTrainer for 10 steps on a tiny Llama that transformers builds, and writes everything `keel dpo` needs
to be compared with it (Tests/Reference/dpo_trl/): the model directory (`save_pretrained`, a tokenizer trained by
`tokenizers` with ChatML markers and a chat template), the preference pairs, and TRL's per-step figures.

    .venv-hf/bin/pip install trl==1.16.0          (once, beside torch and transformers: scripts/hf_check/setup.sh)
    .venv-hf/bin/python scripts/hf_check/make_dpo_fixture.py [OUT]     (OUT: Tests/Reference/dpo_trl)

Cases, each 10 optimizer steps of 2 micro-batches of 2 pairs, 24 pairs read in order (so the run wraps into a second
epoch), a constant learning rate, AdamW (0.9, 0.999, 1e-8, no weight decay), gradient norm clipped at 1:
  text   plain-text prompt/chosen/rejected strings (TRL appends the end-of-sequence token), DPO's sigmoid loss, β 0.1,
         learning rate 1e-3
  chat   the same pairs as conversations rendered by the chat template, DPO's sigmoid loss, β 0.1, 1e-3
  ipo    the plain-text pairs, IPO's loss (log-ratios per completion token), β 0.5, 1e-4 (at 1e-3 IPO overshoots its
         target and oscillates, and float rounding grows to 1e-4 of the small loss within four steps)

Per step, `trl_<case>.json` holds the loss and TRL's rewards/chosen, rewards/rejected, rewards/accuracies,
rewards/margins, logps/chosen, logps/rejected (means over the step's micro-batches, recorded unrounded as
`compute_loss` returns them) and grad_norm (before clipping).
"""
import json
import os
import shutil
import sys

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Tests", "Reference", "dpo_trl")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
KEYS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]


def training_text():
    directory = os.path.join(ROOT, "data", "shakespeare")
    names = sorted(n for n in os.listdir(directory) if n.endswith(".txt"))[:2]
    return [open(os.path.join(directory, n), encoding="utf-8").read()[:200_000] for n in names]


def pairs():
    """24 prompts, each with a better and a worse answer (the better one names what is asked)."""
    things = ["the king", "the queen", "a ghost", "the prince", "a sword", "the castle", "a letter", "the fool",
              "the night", "a crown", "the sea", "a storm"]
    result = []
    for i, thing in enumerate(things * 2):
        question = f"Who speaks of {thing}?" if i < len(things) else f"What is {thing}?"
        chosen = f" It is {thing}, my lord." if i % 3 else f" I know {thing} well, and so do you."
        rejected = " Nothing, nothing at all." if i % 2 else " The rest is silence."
        result.append((question, chosen, rejected))
    return result


def make_model(directory):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=380, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(training_text(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # weights large enough that every log-probability depends on them
        generator = torch.Generator().manual_seed(1)
        for name, parameter in model.named_parameters():
            if not name.endswith("norm.weight"):
                parameter.copy_(0.08 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(directory)
    fast.save_pretrained(directory)


class RecordingDPOTrainer(DPOTrainer):
    """DPOTrainer that keeps each micro-batch's loss and metrics unrounded, and each step's gradient norm."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []
        self.norms = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        metrics = self._metrics["train"]
        self.records.append({"loss": loss.item(), **{key: metrics[key][-1] for key in KEYS}})
        return loss

    def log(self, logs, *args, **kwargs):
        if "grad_norm" in logs:
            self.norms.append(float(logs["grad_norm"]))
        super().log(logs, *args, **kwargs)


def run(case, directory, data, loss_type, beta, lr):
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    args = DPOConfig(output_dir=os.path.join("/tmp", f"dpo-fixture-{case}"), per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, max_steps=10, learning_rate=lr, lr_scheduler_type="constant",
                     warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                     max_grad_norm=1.0, beta=beta, loss_type=[loss_type], max_length=64, logging_steps=1, save_strategy="no",
                     report_to=[], seed=0, train_sampling_strategy="sequential", use_cpu=True, dataloader_num_workers=0,
                     disable_tqdm=True, bf16=False, fp16=False)
    trainer = RecordingDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tokenizer)
    trainer.train()
    accumulation = args.gradient_accumulation_steps
    steps = []
    for step in range(args.max_steps):
        micro = trainer.records[step * accumulation:(step + 1) * accumulation]
        # The step's loss: its micro-batches' mean (each is a mean over its pairs, all of one size).
        figures = {key: sum(m[key] for m in micro) / accumulation for key in ["loss"] + KEYS}
        figures["grad_norm"] = trainer.norms[step]
        steps.append(figures)
    with open(os.path.join(OUT, f"trl_{case}.json"), "w") as f:
        json.dump({"case": case, "loss_type": loss_type, "beta": beta, "lr": lr, "steps": steps}, f, indent=1)
    print(case, " ".join(f"{s['loss']:.6f}" for s in steps))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    model_dir = os.path.join(OUT, "model")
    os.makedirs(model_dir)
    make_model(model_dir)
    text = [{"prompt": q, "chosen": c, "rejected": r} for q, c, r in pairs()]
    chat = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c.strip()}],
             "rejected": [{"role": "assistant", "content": r.strip()}]} for q, c, r in pairs()]
    for name, rows in [("text", text), ("chat", chat)]:
        with open(os.path.join(OUT, f"pairs_{name}.jsonl"), "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    run("text", model_dir, text, "sigmoid", 0.1, 1e-3)
    run("chat", model_dir, chat, "sigmoid", 0.1, 1e-3)
    run("ipo", model_dir, text, "ipo", 0.5, 1e-4)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Written by scripts/hf_check/make_dpo_fixture.py (TRL " + __import__("trl").__version__ + ", transformers "
                + __import__("transformers").__version__ + ", torch " + torch.__version__ + "); see its docstring. "
                "The tokenizer is trained on the first two plays in data/shakespeare (public domain); the pairs are "
                "written by the script.\n")


if __name__ == "__main__":
    main()
