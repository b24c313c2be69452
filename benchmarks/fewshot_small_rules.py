"""Temperature rules for 16-example fits scored on saved logits, one family of tasks left out at a time.

Reads the ``.npz`` files of ``fewshot_small_calibration.py --save-logits DIR`` (one per fit: the untuned
body's leave-one-out logits of the examples, the full model's logits on the evaluation texts, labels) and
scores each rule by the ECE (10 bins, predicted label) on the evaluation texts:

- ``T=t``: a fixed temperature (``T=1`` is the labeller's behaviour at 16 examples).
- ``loo sd=s``: the most probable T for the leave-one-out logits under a normal prior on log T (sd ``s``).
- ``oof sd=s`` (runs with ``--crossfit``): the fold models' out-of-fold MAP temperature, and ``oof sd=s
  soften`` the same never below 1 (``fit_temperature(soften_only=True)``, what ``calibration="crossfit"``
  does below 32 examples).
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
from fewshot_calibration import ece_at

from semsearch.label.crossfit import fit_temperature

FIXED = (1.0, 1.25, 1.5, 2.0)
PRIOR_SDS = (0.25, 0.5, 1.0, 2.0)


def family(task: str) -> str:
    """The family a task is left out with: its parent dataset, SST-2 counted with the SST-5 pairs."""
    parent = task.split(":")[0]
    return "sentiment" if parent in ("sst2", "sst5") else parent


def load(folder: Path) -> list[dict]:
    """One dict per saved fit, keyed as :func:`fewshot_calibration.load`'s (``eval``, ``y_eval``) so that its
    :func:`~fewshot_calibration.ece_at` scores it; ``t`` holds each rule's temperature, computed once."""
    fits = []
    for path in sorted(folder.glob("*.npz")):
        z = np.load(path)
        fit = {"loo_untuned": z["loo_untuned"], "train_labels": z["train_labels"], "eval": z["dev"],
               "y_eval": z["dev_labels"], "task": str(z["task"]), "seed": int(z["seed"]),
               "descriptions": bool(z["descriptions"])}
        if "oof" in z:
            fit["oof"] = z["oof"]
        fit["family"] = family(fit["task"])
        fit["loo_accuracy"] = float((fit["loo_untuned"].argmax(1) == fit["train_labels"]).mean())
        fit["best_t"] = fit_temperature(fit["eval"], fit["y_eval"])
        fit["t"] = {name: rule(fit) for name, rule in rules(crossfit="oof" in fit).items()}
        fits.append(fit)
    return fits


def rules(crossfit: bool) -> dict:
    """Rules that need no fitting across tasks: ``name -> (fit -> T)``; with ``crossfit`` (``--crossfit`` runs)
    also the fold models' out-of-fold MAP temperature, plain and soften-only."""
    found = {f"T={t:g}": (lambda fit, t=t: t) for t in FIXED}
    for sd in PRIOR_SDS:
        found[f"loo sd={sd:g}"] = lambda fit, sd=sd: fit_temperature(fit["loo_untuned"], fit["train_labels"],
                                                                     prior_sd=sd)
    for sd in (0.5, 1.0) if crossfit else ():
        for soften in (False, True):
            found[f"oof sd={sd:g}" + (" soften" if soften else "")] = lambda fit, sd=sd, soften=soften: (
                fit_temperature(fit["oof"], fit["train_labels"], prior_sd=sd, soften_only=soften))
    return found


def accuracy_map(train: list[dict]):
    """``fit -> T`` from log T = a + b × leave-one-out accuracy, least squares on ``train``'s best temperatures."""
    x = np.array([f["loo_accuracy"] for f in train])
    b, a = np.polyfit(x, np.log([f["best_t"] for f in train]), 1)
    return lambda fit: float(np.clip(np.exp(a + b * fit["loo_accuracy"]), 0.01, 100.0)), (a, b)


def temperature(fit: dict, rule: str, mapped) -> float:
    return mapped(fit) if rule == "accuracy map" else fit["t"][rule]


def family_mean(fits: list[dict], rule: str, mapped, families: list[str]) -> float:
    """Mean over ``families`` of the family's mean ECE under ``rule``."""
    return statistics.mean(statistics.mean(ece_at(f, temperature(f, rule, mapped)) for f in fits
                                           if f["family"] == fam) for fam in families)


def analyse(folder: Path, json_path: Path | None = None) -> None:
    fits = load(folder)
    out = {"per_task": [], "left_out": []}
    for with_desc in (False, True):
        sel = [f for f in fits if f["descriptions"] == with_desc]
        if not sel:
            continue
        names = [*(n for n in sel[0]["t"] if all(n in f["t"] for f in sel)), "accuracy map"]
        mapped = accuracy_map(sel)[0]  # fitted on everything: the table only, not the choice
        print(f"\n== descriptions: {with_desc}  ({len(sel)} fits)  mean ECE per task; T=1 accuracy; best T")
        print(f"{'task':38} {'acc':>5} {'loo acc':>7} {'best T':>6} " + " ".join(f"{r:>12}" for r in names))
        by_task = defaultdict(list)
        for f in sel:
            by_task[f["task"]].append(f)
        for task, group in by_task.items():
            cells = {r: statistics.mean(ece_at(f, temperature(f, r, mapped)) for f in group) for r in names}
            acc = statistics.mean(float((f["eval"].argmax(1) == f["y_eval"]).mean()) for f in group)
            loo = statistics.mean(f["loo_accuracy"] for f in group)
            best = float(np.exp(np.mean(np.log([f["best_t"] for f in group]))))
            print(f"{task:38} {acc:5.3f} {loo:7.3f} {best:6.2f} " + " ".join(f"{cells[r]:12.3f}" for r in names))
            out["per_task"].append({"task": task, "descriptions": with_desc, "samples": len(group),
                                    "accuracy": acc, "loo_accuracy": loo, "best_t_geomean": best, "ece": cells})
        families = sorted({f["family"] for f in sel})
        print("\nleft out   chosen on the others        ECE there   T=1 there   difference (se), tasks better")
        for held in families:
            train = [f for f in sel if f["family"] != held]
            others = [fam for fam in families if fam != held]
            held_map, coef = accuracy_map(train)
            chosen = min(names, key=lambda r: family_mean(train, r, held_map, others))
            test = [f for f in sel if f["family"] == held]
            got = [ece_at(f, temperature(f, chosen, held_map)) for f in test]
            base = [ece_at(f, 1.0) for f in test]
            diff = np.array(got) - np.array(base)
            better = int((diff < -1e-9).sum())  # soften-only T can be the grid point 1 + 1e-15: not "better"
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
            print(f"{held:10} {chosen:27} {statistics.mean(got):9.3f} {statistics.mean(base):11.3f}   "
                  f"{diff.mean():+.3f} ({se:.3f}), {better}/{len(diff)}")
            out["left_out"].append({"descriptions": with_desc, "left_out": held, "chosen": chosen,
                                    "accuracy_map": [float(c) for c in coef], "ece": statistics.mean(got),
                                    "ece_t1": statistics.mean(base), "difference": float(diff.mean()), "se": se,
                                    "fits_better": better, "fits": len(diff)})
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
