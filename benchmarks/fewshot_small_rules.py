"""Temperature rules for 16-example fits scored on saved logits, one family of tasks left out at a time.

Reads the ``.npz`` files of ``fewshot_small_calibration.py --save-logits DIR`` (one per fit: the untuned
body's leave-one-out logits of the examples, the full model's logits on the evaluation texts, labels) and
scores each rule by the ECE (10 bins, predicted label) on the evaluation texts:

- ``T=t``: a fixed temperature (``T=1`` is the labeller's behaviour at 16 examples).
- ``loo sd=s``: the most probable T for the leave-one-out logits under a normal prior on log T (sd ``s``).
- ``accuracy map``: log T = a + b × (the untuned leave-one-out accuracy), a and b fitted by least squares
  to each fit's own best temperature (the log-loss optimum on its evaluation texts) — on the training
  families only.

Leave one family out (sentiment: SST-2 and the SST-5 pairs; Subj; TREC pairs): the rule with the lowest
mean ECE on the other families (each family's fits averaged first) is chosen and reported on the family
left out, beside T = 1 — a rule that cannot beat T = 1 on a family it was not chosen on is not a default.

    python benchmarks/fewshot_small_rules.py benchmarks/results/fewshot/small-cal-logits [--json rules.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from semsearch.label.crossfit import fit_temperature, softmax
from semsearch.label.threshold import expected_calibration_error

FIXED = (1.0, 1.25, 1.5, 2.0)
PRIOR_SDS = (0.25, 0.5, 1.0, 2.0)


def family(task: str) -> str:
    """The family a task is left out with: its parent dataset, SST-2 counted with the SST-5 pairs."""
    parent = task.split(":")[0]
    return "sentiment" if parent in ("sst2", "sst5") else parent


def load(folder: Path) -> list[dict]:
    fits = []
    for path in sorted(folder.glob("*.npz")):
        z = np.load(path)
        fit = {k: z[k] for k in ("loo_untuned", "train_labels", "dev", "dev_labels", "oof", "fit_seconds")
               if k in z}
        fit.update(task=str(z["task"]), seed=int(z["seed"]), descriptions=bool(z["descriptions"]))
        fit["family"] = family(fit["task"])
        fit["loo_accuracy"] = float((fit["loo_untuned"].argmax(1) == fit["train_labels"]).mean())
        fit["best_t"] = fit_temperature(fit["dev"], fit["dev_labels"])
        fits.append(fit)
    return fits


def ece(fit: dict, t: float) -> float:
    proba = softmax(fit["dev"] / t)
    pred = proba.argmax(axis=1)
    return expected_calibration_error(proba[np.arange(len(pred)), pred], pred == fit["dev_labels"])


def fixed_rules() -> dict:
    """Rules that need no fitting across tasks: ``name -> (fit -> T)``."""
    rules = {f"T={t:g}": (lambda fit, t=t: t) for t in FIXED}
    for sd in PRIOR_SDS:
        rules[f"loo sd={sd:g}"] = lambda fit, sd=sd: fit_temperature(fit["loo_untuned"], fit["train_labels"],
                                                                     prior_sd=sd)
    return rules


def crossfit_rules() -> dict:
    """Rules on the fold models' out-of-fold logits (``--crossfit`` runs): the MAP temperature, and the same
    never below 1 (soften only)."""
    rules = {}
    for sd in (0.5, 1.0):
        rules[f"oof sd={sd:g}"] = lambda fit, sd=sd: fit_temperature(fit["oof"], fit["train_labels"], prior_sd=sd)
        rules[f"oof sd={sd:g} soften"] = lambda fit, sd=sd: max(
            1.0, fit_temperature(fit["oof"], fit["train_labels"], prior_sd=sd))
    return rules


def accuracy_map(train: list[dict]):
    """``fit -> T`` from log T = a + b × leave-one-out accuracy, least squares on ``train``'s best temperatures."""
    x = np.array([f["loo_accuracy"] for f in train])
    b, a = np.polyfit(x, np.log([f["best_t"] for f in train]), 1)
    return lambda fit: float(np.clip(np.exp(a + b * fit["loo_accuracy"]), 0.01, 100.0)), (a, b)


def family_mean(fits: list[dict], rule, families: list[str]) -> float:
    """Mean over ``families`` of the family's mean ECE under ``rule``."""
    return statistics.mean(statistics.mean(ece(f, rule(f)) for f in fits if f["family"] == fam) for fam in families)


def analyse(folder: Path, json_path: Path | None = None) -> None:
    fits = load(folder)
    out = {"per_task": [], "left_out": []}
    for with_desc in (False, True):
        sel = [f for f in fits if f["descriptions"] == with_desc]
        if not sel:
            continue
        crossfit = all("oof" in f for f in sel)
        rules = fixed_rules() | (crossfit_rules() if crossfit else {})
        rules["accuracy map"] = accuracy_map(sel)[0]  # fitted on everything: the table only, not the choice
        print(f"\n== descriptions: {with_desc}  ({len(sel)} fits)  mean ECE per task; T=1 accuracy; best T")
        print(f"{'task':38} {'acc':>5} {'loo acc':>7} {'best T':>6} " + " ".join(f"{r:>12}" for r in rules))
        by_task = defaultdict(list)
        for f in sel:
            by_task[f["task"]].append(f)
        for task, group in by_task.items():
            cells = {r: statistics.mean(ece(f, rule(f)) for f in group) for r, rule in rules.items()}
            acc = statistics.mean(float((f["dev"].argmax(1) == f["dev_labels"]).mean()) for f in group)
            loo = statistics.mean(f["loo_accuracy"] for f in group)
            best = float(np.exp(np.mean(np.log([f["best_t"] for f in group]))))
            print(f"{task:38} {acc:5.3f} {loo:7.3f} {best:6.2f} " + " ".join(f"{cells[r]:12.3f}" for r in rules))
            out["per_task"].append({"task": task, "descriptions": with_desc, "samples": len(group),
                                    "accuracy": acc, "loo_accuracy": loo, "best_t_geomean": best, "ece": cells})
        families = sorted({f["family"] for f in sel})
        print("\nleft out   chosen on the others        ECE there   T=1 there   difference (se), tasks better")
        for held in families:
            train = [f for f in sel if f["family"] != held]
            others = [fam for fam in families if fam != held]
            candidates = fixed_rules() | (crossfit_rules() if crossfit else {})
            candidates["accuracy map"], coef = accuracy_map(train)
            chosen = min(candidates, key=lambda r: family_mean(train, candidates[r], others))
            test = [f for f in sel if f["family"] == held]
            got = [ece(f, candidates[chosen](f)) for f in test]
            base = [ece(f, 1.0) for f in test]
            diff = np.array(got) - np.array(base)
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
            print(f"{held:10} {chosen:27} {statistics.mean(got):9.3f} {statistics.mean(base):11.3f}   "
                  f"{diff.mean():+.3f} ({se:.3f}), {int((diff < 0).sum())}/{len(diff)}")
            out["left_out"].append({"descriptions": with_desc, "left_out": held, "chosen": chosen,
                                    "accuracy_map": [float(c) for c in coef], "ece": statistics.mean(got),
                                    "ece_t1": statistics.mean(base), "difference": float(diff.mean()), "se": se,
                                    "fits_better": int((diff < 0).sum()), "fits": len(diff)})
    if json_path:
        json_path.write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    analyse(args.folder, args.json)


if __name__ == "__main__":
    main()
