"""Choosing SetFitLabeler's defaults on the SST dev splits (never the test splits).

Each variant is a set of SetFitLabeler keyword arguments on top of the defaults; every variant
is trained on the same seeded sample (drawn from the train split, the seeds apart from
fewshot_sst.py's 0-4), one after another for each seed (in reverse order on every other seed, so
that a drift in the machine's speed favours none), and scored on the dev split: accuracy, ECE of
the predicted label's probability (10 bins), training seconds, mean ± std over seeds; then each
variant's training time as a ratio to the first variant's on the same seed (geometric mean, range).
The README's "how the defaults were chosen" cites its runs.

    python benchmarks/fewshot_dev.py --variants "default" "head_c=1.0" [--datasets sst2,sst5]
        [--shots 8,64] [--seeds 10,11,12,13] [--data ../shared/datasets/classification]
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
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
    import sentence_transformers  # noqa: F401  (imported here, not inside the first timed fit)

    from semsearch.label_setfit import SetFitLabeler

    print(json.dumps({"machine": machine()}), flush=True)
    variants = {v: parse_variant(v) for v in args.variants}
    results = []
    settings = samples(args.data, args.datasets.split(","), [int(s) for s in args.shots.split(",")],
                       [int(s) for s in args.seeds.split(",")], "dev")
    for turn, (name, descriptions, shots, seed, texts, labels, dev_texts, dev_labels) in enumerate(settings):
        for variant, kwargs in list(variants.items())[::1 if turn % 2 == 0 else -1]:
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
    print()
    for line in time_ratios(results, args.variants[0]):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def time_ratios(results: list[dict], first: str) -> list[str]:
    """Per setting and variant: training time over the first variant's on the same seed, geometric mean and range."""
    lines = []
    base = {(r["dataset"], r["shots"], r["seed"]): r["train_s"] for r in results if r["variant"] == first}
    for key in dict.fromkeys((r["dataset"], r["shots"], r["variant"]) for r in results if r["variant"] != first):
        ratios = [r["train_s"] / base[r["dataset"], r["shots"], r["seed"]] for r in results
                  if (r["dataset"], r["shots"], r["variant"]) == key and (r["dataset"], r["shots"], r["seed"]) in base]
        if ratios:
            mean = statistics.geometric_mean(ratios)
            lines.append(f"{key[0]} {key[1]}-shot: {key[2]} / {first} training time {mean:.2f} "
                         f"({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} seeds)")
    return lines


if __name__ == "__main__":
    main()
