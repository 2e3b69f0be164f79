"""GRPO's per-token loss and group advantages in NumPy (float64), written as TRL writes them
(trl/trainer/grpo_trainer.py: _compute_loss and the advantage computation), with the derivative of the loss by
central differences: the oracle for KeelKernels' PolicyLoss.

Usage: policy_loss.py CASES.json   (a list of cases; prints a JSON list of results)
  {"kind": "token", "lp", "old", "ref" (or null), "adv", "eps", "beta"} → {"loss", "derivative", "clipped"}
  {"kind": "advantages", "rewards": [...], "group": G}                   → {"advantages": [...], "spreads": [...]}
"""
import json
import sys

import numpy as np


def token_loss(lp, old, ref, adv, eps, beta):
    coef_1 = np.exp(lp - old)
    coef_2 = np.clip(coef_1, 1 - eps, 1 + eps)
    per_token_loss1 = coef_1 * adv
    per_token_loss2 = coef_2 * adv
    per_token_loss = -np.minimum(per_token_loss1, per_token_loss2)
    if beta != 0.0 and ref is not None:
        per_token_kl = np.exp(ref - lp) - (ref - lp) - 1
        per_token_loss = per_token_loss + beta * per_token_kl
    return per_token_loss, bool(per_token_loss2 < per_token_loss1)


def main():
    results = []
    for case in json.load(open(sys.argv[1])):
        if case["kind"] == "token":
            args = (case.get("ref"), case["adv"], case["eps"], case["beta"])
            loss, clipped = token_loss(case["lp"], case["old"], *args)
            h = 1e-6
            derivative = (token_loss(case["lp"] + h, case["old"], *args)[0] - token_loss(case["lp"] - h, case["old"], *args)[0]) / (2 * h)
            results.append({"loss": float(loss), "derivative": float(derivative), "clipped": clipped})
        else:
            rewards = np.array(case["rewards"], dtype=np.float64).reshape(-1, case["group"])
            mean = rewards.mean(axis=1, keepdims=True)
            std = rewards.std(axis=1, ddof=1, keepdims=True)  # torch.std's default correction
            advantages = (rewards - mean) / (std + 1e-4)
            results.append({"advantages": advantages.reshape(-1).tolist(), "spreads": std.reshape(-1).tolist()})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
