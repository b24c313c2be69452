"""Choosing SetFitLabeler's defaults on the dev splits of SST-2, SST-5, TREC and Subj (never the test splits).

Each variant is a set of SetFitLabeler keyword arguments on top of the defaults; every variant
is trained on the same seeded sample (drawn from the train split, the seeds apart from
fewshot.py's 0-4), one after another for each seed (in reverse order on every other seed, and
labeller seed with ``--labeller-seed-offsets``, so that a drift in the machine's speed favours none),
and scored on the dev split: accuracy, ECE of the predicted label's probability (10 bins), training
seconds, mean ± std over seeds; then each variant's training time as a ratio to the first variant's
on the same seed (geometric mean, range).
docs/benchmarks/fewshot.md's "how the defaults were chosen" cites its runs. ``descriptions=None`` in a
variant trains without the label descriptions; ``--save-logits`` keeps each fit's logits for
``fewshot_calibration.py``.

``--labeller-seed-offsets 0,100,200`` trains every variant on each sample once per offset, with the
labeller seeded ``sample seed + offset`` (batch order, dropout, folds): the spread of training alone,
on one sample. It then also prints, per setting and variant, that within-sample standard deviation of
the accuracy and the ECE (pooled over the samples) against the standard deviation of the per-sample means.

    python benchmarks/fewshot_dev.py --variants "default" "head_c=1.0" [--datasets sst2,sst5,trec,subj]
        [--shots 8,64] [--seeds 10,11,12,13] [--labeller-seed-offsets 0] [--data ../shared/datasets/classification]
    python benchmarks/fewshot_dev.py --from-json docs/fewshot-sst/dev-2026-12-01-parallel-64.json   # re-summarise
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time
from pathlib import Path

import numpy as np
from fewshot import (
    DEFAULT_DATA,
    SUMMARY_HEADER,
    machine,
    samples,
    scores,
    summary_cells,
)


def parse_variant(text: str) -> dict:
    """``"default"`` or comma-separated ``name=python-literal`` pairs, e.g. ``head_c=1.0,calibration='none'``."""
    if text == "default":
        return {}
    pairs = (item.split("=", 1) for item in text.split(","))
    return {name.strip(): ast.literal_eval(value.strip()) for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", default="sst2,sst5,trec,subj")
    parser.add_argument("--shots", default="8,64")
    parser.add_argument("--seeds", default="10,11,12,13")
    parser.add_argument("--labeller-seed-offsets", default="0")
    parser.add_argument("--variants", nargs="+", default=["default", "head_c=1.0"])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--save-logits", type=Path, default=None,
                        help="a folder: each fit's out-of-fold and dev logits as .npz (fewshot_calibration.py reads them)")
    parser.add_argument("--from-json", type=Path, default=None, help="summarise a saved run's rows; no training")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        report(results, list(dict.fromkeys(r["variant"] for r in results))[0])
        return
    import sentence_transformers  # noqa: F401  (imported here, not inside the first timed fit)

    from semsearch.label.setfit import SetFitLabeler

    print(json.dumps({"machine": machine()}), flush=True)
    variants = {v: parse_variant(v) for v in args.variants}
    if args.save_logits:
        args.save_logits.mkdir(parents=True, exist_ok=True)
    results = []
    offsets = [int(s) for s in args.labeller_seed_offsets.split(",")]
    settings = samples(args.data, args.datasets.split(","), [int(s) for s in args.shots.split(",")],
                       [int(s) for s in args.seeds.split(",")], "dev")
    turn = 0
    for name, descriptions, shots, seed, texts, labels, dev_texts, dev_labels in settings:
        for offset in offsets:
            for variant, kwargs in list(variants.items())[::1 if turn % 2 == 0 else -1]:
                start = time.perf_counter()
                options = {"descriptions": descriptions, "seed": seed + offset, **kwargs}  # descriptions=None: none
                lab = SetFitLabeler(**options).fit(texts, labels)
                seconds = time.perf_counter() - start
                if args.save_logits:
                    np.savez(args.save_logits / f"{name}-{shots}-{seed + offset}-{variant.replace('-', '_')}.npz",
                             out_of_fold=lab.out_of_fold_logits if lab.out_of_fold_logits is not None else np.empty(0),
                             train_labels=np.array([lab.classes.index(y) for y in labels]),
                             eval=lab.decision_function(dev_texts), temperature=lab.temperature,
                             classes=np.array(lab.classes))
                row = {"dataset": name, "shots": shots, "seed": seed, "labeller_seed": seed + offset,
                       "variant": variant, **{k: lab.fit_info[k] for k in ("tuning", "epochs", "steps", "calibration")},
                       **scores(lab.predict_proba(dev_texts), lab.classes, dev_labels), "train_s": seconds,
                       "temperature": lab.temperature, "head_c": lab.fit_info["head_c"]}
                results.append(row)
                print(json.dumps(row), flush=True)
            turn += 1
    report(results, args.variants[0])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def by_setting(results: list[dict]) -> dict[tuple, list[dict]]:
    """The rows of each (dataset, shots, variant), in the order they first appear."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["shots"], r["variant"]), []).append(r)
    return groups


def report(results: list[dict], first: str) -> None:
    """Print the summary table, the training-time ratios to the ``first`` variant and the training spread."""
    groups = by_setting(results)
    print(f"\n| dataset | shots | variant | dev {SUMMARY_HEADER} | per seed |")
    print("|---|---|---|---|---|---|---|")
    for key, rows in groups.items():
        per_seed = " / ".join(f"{100 * r['accuracy']:.1f}" for r in rows)
        print(f"| {key[0]} | {key[1]} | `{key[2]}` | {summary_cells(rows)} | {per_seed} |")
    print()
    for line in time_ratios(groups, first) + training_spread(groups):
        print(line)


def time_ratios(groups: dict[tuple, list[dict]], first: str) -> list[str]:
    """Per setting and variant (:func:`by_setting`): training time over the ``first`` variant's on the same
    sample and labeller seed, geometric mean and range."""
    def fit(r):  # the sample and the labeller's seed
        return r["dataset"], r["shots"], r["seed"], r.get("labeller_seed", r["seed"])

    base = {fit(r): r["train_s"] for key, rows in groups.items() if key[2] == first for r in rows}
    lines = []
    for key, rows in groups.items():
        ratios = [r["train_s"] / base[fit(r)] for r in rows if fit(r) in base]
        if key[2] != first and ratios:
            mean = statistics.geometric_mean(ratios)
            lines.append(f"{key[0]} {key[1]}-shot: {key[2]} / {first} training time {mean:.2f} "
                         f"({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} seeds)")
    return lines


def training_spread(groups: dict[tuple, list[dict]]) -> list[str]:
    """Per setting and variant (:func:`by_setting`), for accuracy (points) and ECE: the standard deviation over
    labeller seeds on one sample (variances pooled over the samples) and that of the per-sample means; only
    where some sample was trained with several labeller seeds."""
    lines = []
    for key, rows in groups.items():
        per_sample: dict[int, list[dict]] = {}
        for r in rows:
            per_sample.setdefault(r["seed"], []).append(r)
        if all(len(fits) < 2 for fits in per_sample.values()):
            continue
        cells = []
        for metric, scale, digits in (("accuracy", 100, 2), ("ece", 1, 3)):
            values = [[scale * r[metric] for r in fits] for fits in per_sample.values()]
            within = statistics.mean(statistics.variance(v) for v in values if len(v) > 1) ** 0.5
            means = [statistics.mean(v) for v in values]
            across = f"{statistics.stdev(means):.{digits}f}" if len(means) > 1 else "-"
            cells.append(f"{metric} {within:.{digits}f} on one sample, {across} across the per-sample means")
        lines.append(f"{key[0]} {key[1]}-shot {key[2]}, std over labeller seeds "
                     f"({len(per_sample)} samples): " + "; ".join(cells))
    return lines


if __name__ == "__main__":
    main()
