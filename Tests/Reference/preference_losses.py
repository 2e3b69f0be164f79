"""Preference losses in NumPy (float64), written as TRL writes them (trl/trainer/reward_trainer.py and
dpo_trainer.py's dpo_loss), with derivatives by central differences: the oracle for KeelKernels' PreferenceLoss.

Usage: preference_losses.py CASES.json   (a list of cases; prints a JSON list of results)
  {"kind": "bt", "chosen", "rejected", "margin", "centering"}            → {"loss", "d_chosen", "d_rejected"}
  {"kind": "sigmoid" | "ipo", "pc", "pr", "rc", "rr", "beta", "smoothing"} → {"loss", "d_chosen", "d_rejected",
                                                                            "chosen_reward", "rejected_reward"}
"""
import json
import sys

import numpy as np


def logsigmoid(x):
    # torch.nn.functional.logsigmoid, in NumPy: -softplus(-x)
    return -np.logaddexp(0.0, -x)


def bt(chosen, rejected, margin, centering):
    loss = -logsigmoid(chosen - rejected - margin)
    return loss + centering * (chosen + rejected) ** 2


def dpo(kind, pc, pr, rc, rr, beta, smoothing):
    logits = (pc - pr) - (rc - rr)
    if kind == "sigmoid":
        return -logsigmoid(beta * logits) * (1 - smoothing) - logsigmoid(-beta * logits) * smoothing
    return (logits - 1 / (2 * beta)) ** 2


def derivative(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


results = []
for case in json.load(open(sys.argv[1])):
    if case["kind"] == "bt":
        c, r, m, k = case["chosen"], case["rejected"], case["margin"], case["centering"]
        results.append({"loss": float(bt(c, r, m, k)), "d_chosen": float(derivative(lambda x: bt(x, r, m, k), c)),
                        "d_rejected": float(derivative(lambda x: bt(c, x, m, k), r))})
    else:
        kind, pc, pr, rc, rr, beta, s = (case[key] for key in ("kind", "pc", "pr", "rc", "rr", "beta", "smoothing"))
        results.append({"loss": float(dpo(kind, pc, pr, rc, rr, beta, s)),
                        "d_chosen": float(derivative(lambda x: dpo(kind, x, pr, rc, rr, beta, s), pc)),
                        "d_rejected": float(derivative(lambda x: dpo(kind, pc, x, rc, rr, beta, s), pr)),
                        "chosen_reward": float(beta * (pc - rc)), "rejected_reward": float(beta * (pr - rr))})
print(json.dumps(results))
