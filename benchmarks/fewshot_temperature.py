"""How good is SetFitLabeler's cross-fitted temperature? Fitted T against the split's own best T.

For each seeded sample (fewshot.py's samples; `--split dev` to study, `test` only to diagnose),
trains the labeller with its defaults, then draws the out-of-fold logits ``--repeats`` times: repeat 0
is exactly the labeller's own cross-fitting (its folds and fold models, seeded with the sample's seed),
repeat r > 0 uses other folds and fold-model seeds (seed + 1000 r). Reports, per seed and summarised:

- the labeller's temperature (repeat 0's most likely T) against probabilities averaged over the
  temperature's posterior given repeat 0's out-of-fold labels (:func:`temperature_posterior`; tried on
  2026-12-01, better on the dev split, worse on the test split, not adopted: see the README), and the
  paired difference in ECE;
- T from each repeat alone and from all repeats pooled (one temperature fitted on every out-of-fold row);
- the split-optimal T: the temperature minimising the log loss on the evaluation split itself (what a
  perfect estimate from the labelled examples would give), and the error log(T / T_split);
- the ECE (10 bins, predicted label) at each T. Accuracy does not depend on T.

``--save-logits DIR`` keeps each sample's logits (out-of-fold and evaluation, with labels) as
``seed<N>.npz``; ``--from-logits DIR`` evaluates saved ones again without training.

    python benchmarks/fewshot_temperature.py --dataset sst5 --shots 8 --seeds 10-19 --split dev \\
        --repeats 3 [--json out.json] [--save-logits DIR | --from-logits DIR] [--data ../shared/datasets/classification]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from fewshot import DEFAULT_DATA, machine, samples, scores


def seed_list(text: str) -> list[int]:
    """``"10-19"`` or ``"0,3,5"``."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def temperature_posterior(logits: np.ndarray, y: np.ndarray, keep: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """The temperatures and their posterior probabilities given labels ``y`` (those of at least ``keep`` × the most).

    Flat prior on log T over the labeller's grid (0.05 to 100); the likelihood of T is the product of
    ``softmax(logits / T)[i, y_i]``. As T grows the likelihood tends to ``(1 / classes) ** n``, not to 0,
    so the grid's upper end is part of the prior: from 40 SST-5 labels the posterior reaches it.
    """
    from semsearch.label.crossfit import GRID, log_loss

    loss = log_loss(logits, y)
    w = np.exp(-len(y) * (loss - loss.min()))
    kept = w >= keep * w.max()
    return GRID[kept], w[kept] / w[kept].sum()


def mixed_softmax(logits: np.ndarray, temperatures: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k weights[k] * softmax(logits / temperatures[k])``: probabilities averaged over temperatures."""
    from semsearch.label.crossfit import softmax

    return sum(w * softmax(logits / t) for t, w in zip(temperatures, weights))


def study(descriptions, seed, texts, labels, eval_texts, eval_labels, repeats: int,
          save_logits: Path | None = None) -> dict:
    """Train the sample's full model and ``repeats`` cross-fittings, then :func:`evaluate` their logits."""
    from semsearch.label.crossfit import CROSSFIT_MIN_EXAMPLES
    from semsearch.label.setfit import DESCRIPTION_MIN_STEPS, SetFitLabeler

    if len(texts) < CROSSFIT_MIN_EXAMPLES:
        sys.exit(f"{len(texts)} examples: the labeller fits no temperature below {CROSSFIT_MIN_EXAMPLES}")
    start = time.perf_counter()
    # the default fit's full model (the temperature does not change it), without its cross-fitting:
    lab = SetFitLabeler(descriptions=descriptions, seed=seed, calibration="none",
                        description_min_steps=DESCRIPTION_MIN_STEPS).fit(texts, labels)
    info = lab.fit_info
    z_eval = lab._logits(eval_texts)
    y = np.array([lab.classes.index(v) for v in labels])
    y_eval = np.array([lab.classes.index(v) for v in eval_labels])
    oof = np.stack([lab._out_of_fold_logits(texts, labels, info["tuning"], info["epochs"], seed + 1000 * r)[0]
                    for r in range(repeats)])
    if save_logits is not None:   # plain arrays: other estimators can be tried on them without retraining
        save_logits.mkdir(parents=True, exist_ok=True)
        np.savez(save_logits / f"seed{seed}.npz", out_of_fold=oof, y=y, eval_logits=z_eval, eval_y=y_eval,
                 epochs=info["epochs"])
    return {**evaluate(seed, oof, y, z_eval, y_eval), "epochs": info["epochs"],
            "seconds": time.perf_counter() - start}


def evaluate(seed: int, oof: np.ndarray, y: np.ndarray, z_eval: np.ndarray, y_eval: np.ndarray) -> dict:
    """Each way of using the out-of-fold logits ``oof`` (repeats × examples × labels) against the split's best T."""
    from semsearch.label.crossfit import fit_temperature, softmax

    classes, gold = list(range(z_eval.shape[1])), y_eval.tolist()

    def ece(proba: np.ndarray) -> float:
        return scores(proba, classes, gold)["ece"]

    t_split = fit_temperature(z_eval, y_eval)

    def at(t: float) -> dict:
        return {"T": t, "log_error": float(np.log(t / t_split)), "ece": ece(softmax(z_eval / t))}

    single = [at(fit_temperature(z, y)) for z in oof]
    temps, weights = temperature_posterior(oof[0], y)
    return {"seed": seed, "examples": len(y), "accuracy": float((z_eval.argmax(axis=1) == y_eval).mean()),
            "split_optimal": at(t_split), "single": single,
            "pooled": at(fit_temperature(np.vstack(oof), np.tile(y, len(oof)))),
            # the log error is that of repeat 0's most likely T; the ECE is the averaged probabilities'
            "posterior": {**single[0], "ece": ece(mixed_softmax(z_eval, temps, weights)), "temperatures": len(temps)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="sst5", choices=("sst2", "sst5"))
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seeds", default="10-19", help='e.g. "10-19" or "10,11,12"')
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    parser.add_argument("--repeats", type=int, default=3, help="cross-fittings per sample (1 = the labeller's own)")
    parser.add_argument("--json", type=Path, default=None)
    logits = parser.add_mutually_exclusive_group()
    logits.add_argument("--save-logits", type=Path, default=None,
                        help="folder for one seed<N>.npz per sample: out-of-fold and evaluation logits, labels")
    logits.add_argument("--from-logits", type=Path, default=None,
                        help="evaluate the seed<N>.npz files of an earlier --save-logits instead of training")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not seed_list(args.seeds):
        parser.error(f"--seeds {args.seeds!r} names no seed")
    rows = []
    if args.from_logits:
        for seed in seed_list(args.seeds):
            with np.load(args.from_logits / f"seed{seed}.npz", allow_pickle=False) as saved:
                rows.append({**evaluate(seed, saved["out_of_fold"], saved["y"], saved["eval_logits"],
                                        saved["eval_y"]),
                             "epochs": int(saved["epochs"]) if "epochs" in saved else None})
        args.repeats = len(rows[0]["single"])
    else:
        print(json.dumps({"machine": machine()}), flush=True)
        for _, descriptions, _, seed, texts, labels, eval_texts, eval_labels in samples(
                args.data, [args.dataset], [args.shots], seed_list(args.seeds), args.split):
            rows.append(study(descriptions, seed, texts, labels, eval_texts, eval_labels, args.repeats,
                              args.save_logits))
            r = rows[-1]
            print(json.dumps({"seed": seed, "accuracy": r["accuracy"], "T_split": r["split_optimal"]["T"],
                              "T_single": [s["T"] for s in r["single"]], "T_pooled": r["pooled"]["T"],
                              "ece_single": [s["ece"] for s in r["single"]], "ece_pooled": r["pooled"]["ece"],
                              "ece_posterior": r["posterior"]["ece"], "ece_split_optimal": r["split_optimal"]["ece"],
                              "seconds": r["seconds"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2))

    def line(name: str, picks: list[dict]) -> str:
        errors, eces = [p["log_error"] for p in picks], [p["ece"] for p in picks]
        rmse = (sum(e * e for e in errors) / len(errors)) ** 0.5
        return (f"| {name} | {len(picks)} | {statistics.mean(errors):+.3f} | {rmse:.3f} | "
                f"{statistics.mean(eces):.3f} | {statistics.median(eces):.3f} | {max(eces):.3f} |")

    print(f"\n{args.dataset} {args.shots}-shot, {args.split} split, seeds {args.seeds}, {args.repeats} repeat(s)")
    print("| temperature | fits | mean log(T / T_split) | rms | ECE mean | median | max |")
    print("|---|---|---|---|---|---|---|")
    print(line("the labeller's (repeat 0)", [r["single"][0] for r in rows]))
    print(line("posterior average (repeat 0; log error of its most likely T)", [r["posterior"] for r in rows]))
    if args.repeats > 1:
        print(line("any single repeat", [s for r in rows for s in r["single"]]))
        print(line(f"{args.repeats} repeats pooled", [r["pooled"] for r in rows]))
    print(line("split-optimal", [r["split_optimal"] for r in rows]))
    diff = [r["posterior"]["ece"] - r["single"][0]["ece"] for r in rows]
    se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
    print(f"\nECE, posterior average minus the labeller's: {statistics.mean(diff):+.4f} (standard error {se:.4f}), "
          f"lower on {sum(d < 0 for d in diff)} of {len(diff)} seeds")


if __name__ == "__main__":
    main()
