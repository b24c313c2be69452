"""Choosing SetFitLabeler's defaults on the SST dev splits (never the test splits).

Each variant is a set of SetFitLabeler keyword arguments on top of the defaults; every variant
is trained on the same seeded sample (drawn from the train split, the seeds apart from
fewshot_sst.py's 0-4), one after another for each seed, and scored on the dev split: accuracy,
ECE of the predicted label's probability (10 bins), training seconds, mean ± std over seeds.
The README's "how the defaults were chosen" cites its runs.

    python benchmarks/fewshot_dev.py --variants "default" "head_c=1.0" [--datasets sst2,sst5]
        [--shots 8,64] [--seeds 10,11,12,13] [--data ../shared/datasets/classification]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

from fewshot_sst import DEFAULT_DATA, SUMMARY_HEADER, machine, samples, scores, summary_cells


def parse_variant(text: str) -> dict:
    """``"default"`` or comma-separated ``name=python-literal`` pairs, e.g. ``head_c=1.0,calibration='none'``."""
    if text == "default":
        return {}
    pairs = (item.split("=", 1) for item in text.split(","))
    return {name.strip(): ast.literal_eval(value.strip()) for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", default="sst2,sst5")
    parser.add_argument("--shots", default="8,64")
    parser.add_argument("--seeds", default="10,11,12,13")
    parser.add_argument("--variants", nargs="+", default=["default", "head_c=1.0"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from semsearch.label_setfit import SetFitLabeler

    print(json.dumps({"machine": machine()}), flush=True)
    variants = {v: parse_variant(v) for v in args.variants}
    results = []
    settings = samples(args.data, args.datasets.split(","), [int(s) for s in args.shots.split(",")],
                       [int(s) for s in args.seeds.split(",")], "dev")
    for name, descriptions, shots, seed, texts, labels, dev_texts, dev_labels in settings:
        for variant, kwargs in variants.items():
            start = time.perf_counter()
            lab = SetFitLabeler(descriptions=descriptions, seed=seed, **kwargs).fit(texts, labels)
            seconds = time.perf_counter() - start
            row = {"dataset": name, "shots": shots, "seed": seed, "variant": variant,
                   **scores(lab.predict_proba(dev_texts), lab.classes, dev_labels), "train_s": seconds,
                   "temperature": lab.temperature, "head_c": lab.fit_info["head_c"]}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| dataset | shots | variant | dev {SUMMARY_HEADER} | per seed |")
    print("|---|---|---|---|---|---|---|")
    for key in dict.fromkeys((r["dataset"], r["shots"], r["variant"]) for r in results):
        rows = [r for r in results if (r["dataset"], r["shots"], r["variant"]) == key]
        per_seed = " / ".join(f"{100 * r['accuracy']:.1f}" for r in rows)
        print(f"| {key[0]} | {key[1]} | `{key[2]}` | {summary_cells(rows)} | {per_seed} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
