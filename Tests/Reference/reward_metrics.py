"""Reward-model metrics in NumPy: the oracle for KeelTrain's RewardMetrics.

Usage: reward_metrics.py INPUT.json  with {"chosen", "rejected", "chosen2", "rejected2", "chosen_lengths",
"rejected_lengths"} (lists); prints {"accuracy", "ece", "agreement", "spearman", "length_correlation",
"accuracy_shorter"}. ECE: confidence max(p, 1 - p) of p = sigmoid(chosen - rejected), right when p > 0.5, ten equal
bins over [0.5, 1]. Spearman: Pearson's correlation of average ranks (ties share their mean rank).
"""
import json
import sys

import numpy as np

data = json.load(open(sys.argv[1]))
c, r = np.array(data["chosen"]), np.array(data["rejected"])
c2, r2 = np.array(data["chosen2"]), np.array(data["rejected2"])
lc, lr = np.array(data["chosen_lengths"], dtype=float), np.array(data["rejected_lengths"], dtype=float)

p = 1 / (1 + np.exp(-(c - r)))
confidence = np.maximum(p, 1 - p)
right = (p > 0.5).astype(float)
bins = np.minimum(9, np.floor((confidence - 0.5) * 20).astype(int))
ece = sum(abs(right[bins == b].mean() - confidence[bins == b].mean()) * np.sum(bins == b) / len(p)
          for b in range(10) if np.any(bins == b))


def average_ranks(x):
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def pearson(x, y):
    return float(np.corrcoef(x, y)[0, 1])


shorter = lc < lr
print(json.dumps({
    "accuracy": float(np.mean(c > r)),
    "ece": float(ece),
    "agreement": float(np.mean((c - r) * (c2 - r2) > 0)),
    "spearman": pearson(average_ranks(np.concatenate([c, r])), average_ranks(np.concatenate([c2, r2]))),
    "length_correlation": pearson(np.concatenate([c, r]), np.concatenate([lc, lr])),
    "accuracy_shorter": float(np.mean(c[shorter] > r[shorter])),
}))
