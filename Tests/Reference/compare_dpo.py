"""Compares a `keel dpo` run's metrics.jsonl with TRL's DPOTrainer on the same model, pairs and settings
(Tests/Reference/dpo_trl/trl_<case>.json, written by scripts/hf_check/make_dpo_fixture.py), step by step: the loss,
the rewards of the chosen and rejected responses, the reward accuracy and margin, and the policy's log-probabilities
must agree within a relative tolerance (1e-4 by default; an absolute 1e-6 where TRL's value is zero), and the
gradient norm before clipping within 1e-3. Exits 1 naming the first figure that does not.

    python3 Tests/Reference/compare_dpo.py TRL.json RUN/metrics.jsonl [TOLERANCE]
"""
import json
import sys

PAIRS = [("loss", "loss"), ("rewards/chosen", "rewards_chosen"), ("rewards/rejected", "rewards_rejected"),
         ("rewards/accuracies", "rewards_accuracy"), ("rewards/margins", "rewards_margin"),
         ("logps/chosen", "logps_chosen"), ("logps/rejected", "logps_rejected")]


def close(a, b, tolerance):
    return abs(a - b) <= tolerance * max(abs(a), abs(b)) or abs(a - b) <= 1e-6


def main():
    trl = json.load(open(sys.argv[1]))["steps"]
    tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    keel = [json.loads(line) for line in open(sys.argv[2]) if '"loss"' in line]
    if len(keel) != len(trl):
        sys.exit(f"{sys.argv[2]}: {len(keel)} steps, TRL ran {len(trl)}")
    worst = 0.0
    for step, (t, k) in enumerate(zip(trl, keel), start=1):
        checks = [(name, t[name], k[key], tolerance) for name, key in PAIRS]
        checks.append(("grad_norm", t["grad_norm"], k["grad_norm"], 1e-3))
        for name, expected, got, allowed in checks:
            if not close(expected, got, allowed):
                sys.exit(f"step {step}: {name} is {got!r} in Keel, {expected!r} in TRL (beyond {allowed:g} relative)")
            if name != "grad_norm" and max(abs(expected), abs(got)) > 1e-6:
                worst = max(worst, abs(expected - got) / max(abs(expected), abs(got)))
        print(f"step {step:2d}: loss {k['loss']:.6f} (TRL {t['loss']:.6f}), margin {k['rewards_margin']:.5f} "
              f"(TRL {t['rewards/margins']:.5f})")
    print(f"{len(trl)} steps agree with TRL; largest relative difference {worst:.2e} (allowed {tolerance:g})")


if __name__ == "__main__":
    main()
