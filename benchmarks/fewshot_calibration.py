"""Choosing the labeller's temperature rule across datasets, from saved logits (no training).

``fewshot.py --save-logits DIR`` keeps, for every semsearch fit, the out-of-fold logits of the examples
(cross-fitting), the examples' labels and the head's logits on the evaluation split. This script scores
temperature rules on them — no temperature (T = 1), the out-of-fold log-loss optimum (the labeller's
rule until issue 30), and the most probable T under a normal prior on log T of each ``--prior-sds`` —
by the ECE (10 bins, predicted label) on the evaluation split, per dataset, shots and method.

Leave one dataset out: for each dataset, the rule with the lowest mean ECE on the *other* datasets is
chosen and reported on the one left out, so a default is never judged on the data it was chosen on.

    python benchmarks/fewshot_calibration.py results/fewshot/dev8-logits [more folders] [--split dev]
        [--prior-sds 0.25,0.5,1,2] [--plot reliability.png]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from fewshot import DEFAULT_DATA, read_split

from semsearch.label.crossfit import fit_temperature, softmax
from semsearch.label.reliability import reliability_bins, reliability_diagram
from semsearch.label.threshold import expected_calibration_error


def load(folders: list[Path], data: Path, split: str) -> list[dict]:
    """One dict per saved fit: dataset, shots, seed, method, out-of-fold logits and labels, eval logits and labels."""
    gold: dict[str, list[str]] = {}
    fits = []
    for folder in folders:
        for path in sorted(folder.glob("*.npz")):
            name, shots, seed, method = path.stem.split("-", 3)
            saved = np.load(path)
            classes = [str(c) for c in saved["classes"]]
            if name not in gold:
                gold[name] = read_split(data, name, split)[1]
            fits.append({"dataset": name, "shots": int(shots), "seed": int(seed), "method": method,
                         "oof": saved["out_of_fold"], "y_train": saved["train_labels"], "eval": saved["eval"],
                         "y_eval": np.array([classes.index(v) for v in gold[name]])})
    return fits


def ece_at(fit: dict, temperature: float) -> float:
    proba = softmax(fit["eval"] / temperature)
    pred = proba.argmax(axis=1)
    return expected_calibration_error(proba[np.arange(len(pred)), pred], pred == fit["y_eval"])


def rules(prior_sds: list[float], fixed: list[float]) -> dict[str, callable]:
    """Temperature rules: ``fit -> T``, or ``None`` where the rule needs out-of-fold logits the fit lacks."""
    found = {"T=1": lambda fit: 1.0}
    for t in fixed:
        found[f"T={t:g}"] = lambda fit, t=t: t
    found["oof optimum"] = lambda fit: fit_temperature(fit["oof"], fit["y_train"]) if fit["oof"].size else None
    for sd in prior_sds:
        found[f"prior sd {sd:g}"] = lambda fit, sd=sd: (
            fit_temperature(fit["oof"], fit["y_train"], prior_sd=sd) if fit["oof"].size else None)
    return found


def _or_inf(x: float) -> float:
    return float("inf") if np.isnan(x) else x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--prior-sds", default="0.25,0.5,1,2")
    parser.add_argument("--fixed", default="0.5,2,3", help="fixed temperatures to score too (no out-of-fold logits needed)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG: reliability diagrams of the chosen rule")
    args = parser.parse_args()
    fits = load(args.folders, args.data, args.split)
    if not fits:
        sys.exit("no saved logits found (fewshot.py or fewshot_dev.py --save-logits)")
    candidates = rules([float(s) for s in args.prior_sds.split(",")], [float(s) for s in args.fixed.split(",")])
    ece: dict[tuple, dict[str, float]] = defaultdict(dict)  # (dataset, shots, seed, method) -> rule -> ECE
    for fit in fits:
        key = (fit["dataset"], fit["shots"], fit["seed"], fit["method"])
        for rule, temperature in candidates.items():
            t = temperature(fit)
            ece[key][rule] = ece_at(fit, t) if t is not None else float("nan")
    settings = sorted({(k[0], k[1], k[3]) for k in ece})
    print(f"| dataset | shots | method | seeds | {' | '.join(candidates)} |")
    print("|---|---|---|---|" + "---|" * len(candidates))
    for setting in settings:
        keys = [k for k in ece if (k[0], k[1], k[3]) == setting]
        cells = " | ".join(f"{statistics.mean(ece[k][r] for k in keys):.3f}" for r in candidates)
        print(f"| {setting[0]} | {setting[1]} | {setting[2]} | {len(keys)} | {cells} |")
    print("\nLeave one dataset out (the rule with the lowest mean ECE over the other datasets' settings):")
    datasets = sorted({k[0] for k in ece})
    for held in datasets:
        def mean_over(rule, inside):
            per_setting = [statistics.mean(ece[k][rule] for k in ece if (k[0], k[1], k[3]) == s)
                           for s in settings if (s[0] != held) == inside]
            return statistics.mean(per_setting) if per_setting else float("nan")

        chosen = min(candidates, key=lambda r: _or_inf(mean_over(r, True)))  # rules defined on every setting
        print(f"- {held}: chosen on the others: {chosen}; on {held}: ECE {mean_over(chosen, False):.3f} "
              f"(T=1 {mean_over('T=1', False):.3f}, oof optimum {mean_over('oof optimum', False):.3f})")
    if args.plot:
        overall = min(candidates, key=lambda r: _or_inf(statistics.mean(ece[k][r] for k in ece)))
        panels = []
        for setting in settings:
            chosen = [f for f in fits if (f["dataset"], f["shots"], f["method"]) == setting]
            confidence, correct = [], []
            for fit in chosen:
                proba = softmax(fit["eval"] / candidates[overall](fit))
                pred = proba.argmax(axis=1)
                confidence.append(proba[np.arange(len(pred)), pred])
                correct.append(pred == fit["y_eval"])
            panels.append((f"{setting[0]} {setting[1]}-shot {setting[2]}",
                           reliability_bins(np.concatenate(confidence), np.concatenate(correct))))
        reliability_diagram(panels, args.plot, title=f"{args.split} split, rule: {overall}, seeds pooled")
        print(f"\nreliability diagrams ({overall}): {args.plot}")


if __name__ == "__main__":
    main()
