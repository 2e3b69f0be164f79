"""Compares the per-step training losses of two Keel runs' metrics.jsonl files.

Usage: compare_losses.py REFERENCE RUN STEPS TOLERANCE
Exits non-zero unless both hold exactly STEPS step records (steps 1..STEPS) and every loss agrees to
TOLERANCE relative; prints the largest relative difference either way.
"""
import json
import sys


def losses(path):
    records = [json.loads(line) for line in open(path) if '"loss"' in line]
    return {r["step"]: r["loss"] for r in records}, len(records)


reference, run = sys.argv[1], sys.argv[2]
steps, tolerance = int(sys.argv[3]), float(sys.argv[4])
a, count_a = losses(reference)
b, count_b = losses(run)
expected = set(range(1, steps + 1))
if set(a) != expected or set(b) != expected or count_a != steps or count_b != steps:
    sys.exit(f"expected steps 1..{steps} once each; got {count_a} records in {reference}, {count_b} in {run}")
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in expected)
print(f"largest relative loss difference over {steps} steps: {worst:.2e}")
sys.exit(0 if worst <= tolerance else 1)
