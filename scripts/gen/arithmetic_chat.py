"""Arithmetic conversations with exact answers, generated (no download): supervised fine-tuning data, and held-out
problems whose answers a script can check.

Usage: arithmetic_chat.py OUT.jsonl --count N [--seed S] [--digits D] [--prompts | --tasks]
  Each line: {"messages": [{"role": "user", "content": "What is A + B?"},
                           {"role": "assistant", "content": "A + B = C"}]}
  or, with --prompts, {"prompt": "What is A + B?", "answer": "C"} (held-out problems to score a model on),
  or, with --tasks, {"prompt": [{"role": "user", "content": "What is A + B? Reply with only the number."}],
  "answer": "C"} (tasks for `keel grpo`, whose reward checks the reply's last number).
  A and B have up to D digits (default 2); the seed (default 0) fixes the problems.
"""
import argparse
import json
import random

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--digits", type=int, default=2)
parser.add_argument("--prompts", action="store_true")
parser.add_argument("--tasks", action="store_true")
arguments = parser.parse_args()
generator = random.Random(arguments.seed)
top = 10 ** arguments.digits - 1
with open(arguments.out, "w", encoding="utf-8") as out:
    for _ in range(arguments.count):
        a, b = generator.randint(0, top), generator.randint(0, top)
        question = f"What is {a} + {b}?"
        if arguments.tasks:
            line = {"prompt": [{"role": "user", "content": question + " Reply with only the number."}], "answer": str(a + b)}
        elif arguments.prompts:
            line = {"prompt": question, "answer": str(a + b)}
        else:
            line = {"messages": [{"role": "user", "content": question},
                                 {"role": "assistant", "content": f"{a} + {b} = {a + b}"}]}
        out.write(json.dumps(line) + "\n")
