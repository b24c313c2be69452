"""Temperature rules for small fits (16 examples: binary 8-shot), scored on dev splits.

Until issue 30's last round ``SetFitLabeler`` fitted no temperature below 32 examples, and no fixed one
serves both binary dev sets (SST-2 wants about 2, Subj 1: docs/benchmarks/fewshot.md). A likely cause:
the tuned body pulls its own examples tight around their prototypes, so the head learns margins that a
new text does not get, and how much larger depends on how hard the task is. The first rules here estimate
a new text's logits from the training examples alone, without fold models:

- ``none``: T = 1 (the default of then).
- ``untuned-loo``: leave-one-out logits of the same head (features, penalty) on the *untuned* body's
  embeddings; T fitted to them (prior sd 1 on log T), as the cross-fitted temperature is to fold models'.
- ``untuned-loo-scaled``: the same logits first scaled by how much tuning widened the in-sample margins
  (median |margin| of the head fitted on all examples, tuned body over untuned body).
- ``tuned-loo``: leave-one-out heads on the tuned body's embeddings (the body saw every example).
- ``oracle``: the log-loss optimum on the dev split itself (a bound, not a rule).

``--crossfit`` adds the rule now behind ``calibration="crossfit"`` for small fits: cross-fitting at the
full model's epochs (no step minimum; ``--folds`` to change the labeller's four), the out-of-fold logits
kept for ``fewshot_small_rules.py``, which scores the MAP temperature on them with and without
``soften_only``. The full model is the same fit as without ``--crossfit``.

Each fit is ``SetFitLabeler`` at its defaults with ``calibration="none"`` (the defaults of then: no
temperature below 32 examples), with and without descriptions, on the same seeded samples as
``fewshot_dev.py`` (dev split; seeds apart from the test run's 0-4). ECE: 10 bins, predicted label.

Two binary dev sets cannot say whether a rule carries over, so ``--tasks`` also takes binary tasks made
from label pairs of the multi-class sets, ``sst5:negative/positive`` or ``trec:human/location``: 8
examples per label drawn from the pair's train split (never the test split), scored on up to
:data:`PAIR_EVAL` other train texts of the pair (seeded), descriptions the parent's. ``--save-logits DIR``
keeps each fit's logits (leave-one-out, dev, training) so that ``fewshot_small_rules.py DIR`` can score
further rules without training, leaving one family of tasks out at a time.

    python benchmarks/fewshot_small_calibration.py [--tasks sst2,subj,sst5:negative/positive,…] \
        [--seeds 10,11,12,13,14,15] [--json docs/fewshot/dev-…-small-calibration-8.json] [--save-logits DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
from fewshot import DATASETS, DEFAULT_DATA, machine, read_split, sample, samples, scores

from semsearch.label.crossfit import fit_temperature, softmax
from semsearch.label.features import leave_one_out_prototypes, unit_rows

RULES = ("none", "untuned-loo", "untuned-loo-scaled", "tuned-loo", "oracle")
#: a label-pair task is scored on at most this many of the pair's other train texts.
PAIR_EVAL = 1000


def task_samples(data: Path, tasks: list[str], seeds: list[int]):
    """:func:`fewshot.samples` at 8 shots on the dev split for whole datasets; for ``parent:a/b`` the pair's
    train texts, 8 per label drawn with each seed and up to :data:`PAIR_EVAL` of the rest to score on."""
    for task in tasks:
        if ":" not in task:
            yield from samples(data, [task], [8], seeds, "dev")
            continue
        parent, pair = task.split(":")
        chosen = pair.split("/")
        if parent not in DATASETS or len(chosen) != 2 or not set(chosen) <= set(DATASETS[parent][1]):
            raise SystemExit(f"unknown task {task!r}: use dataset:label/label with labels of {sorted(DATASETS)}")
        texts, labels = read_split(data, parent, "train")
        keep = [i for i, y in enumerate(labels) if y in chosen]
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        descriptions = {c: DATASETS[parent][1][c] for c in chosen}
        for seed in seeds:
            train_texts, train_labels = sample(texts, labels, 8, seed)
            drawn = set(train_texts)
            rest = [i for i, t in enumerate(texts) if t not in drawn]
            rest = sorted(random.Random(seed).sample(rest, min(PAIR_EVAL, len(rest))))
            yield (task, descriptions, 8, seed, train_texts, train_labels, [texts[i] for i in rest],
                   [labels[i] for i in rest])


def fit_head(train: np.ndarray, y: np.ndarray, classes: int, anchors: np.ndarray | None, scale: float, c: float):
    """The labeller's head (embedding + ``scale`` × cosines to ``anchors``, or to the prototypes when ``anchors``
    is None, each training row left out of its own) fitted on ``train``: ``(logits of new rows, training
    rows' logits)``, one column per class."""
    from sklearn.linear_model import LogisticRegression

    if anchors is None:
        anchors, cos = leave_one_out_prototypes(train, y, classes)
        x = np.hstack([train, scale * cos])
    else:
        x = np.hstack([train, scale * train @ anchors.T])
    head = LogisticRegression(C=c, max_iter=2000, random_state=0).fit(x, y)

    def logits(features: np.ndarray) -> np.ndarray:
        z = head.decision_function(features)
        return np.column_stack([np.zeros_like(z), z]) if classes == 2 else z

    return (lambda test: logits(np.hstack([test, scale * test @ anchors.T]))), logits(x)


def leave_one_out(emb: np.ndarray, y: np.ndarray, classes: int, anchors, scale: float) -> np.ndarray:
    """Each example's logits from the head fitted on the others (penalty 1 / examples per label, as the labeller's)."""
    out = np.zeros((len(y), classes))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        predict, _ = fit_head(emb[keep], y[keep], classes, anchors, scale, classes / keep.sum())
        out[i] = predict(emb[i:i + 1])[0]
    return out


def in_sample_margin(emb: np.ndarray, y: np.ndarray, classes: int, anchors, scale: float) -> float:
    """Median of the true label's logit minus the best other one, head fitted on all examples, scored on them."""
    _, z = fit_head(emb, y, classes, anchors, scale, classes / len(y))
    own = z[np.arange(len(y)), y]
    other = np.where(np.eye(classes)[y] > 0, -np.inf, z).max(axis=1)
    return float(np.median(np.abs(own - other)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", "--datasets", default="sst2,subj")
    parser.add_argument("--seeds", default="10,11,12,13,14,15")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--save-logits", type=Path, default=None)
    parser.add_argument("--crossfit", action="store_true",
                        help="cross-fit each fit at its own epochs (no step minimum) and keep the out-of-fold "
                             "logits: the full model is the uncalibrated one, the folds come on top")
    parser.add_argument("--folds", type=int, default=None, help="with --crossfit: this many folds")
    args = parser.parse_args()
    crossfit = ({"calibration": "crossfit", "description_min_steps": 0, "crossfit_folds": args.folds}
                if args.crossfit else {"calibration": "none"})
    from semsearch.encode.models import (
        load_sentence_transformer,
        model_folder,
        model_name,
    )
    from semsearch.label.setfit import SetFitLabeler

    untuned = load_sentence_transformer(model_folder(model_name(None)))

    def encode(model, texts):
        return unit_rows(model.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False))

    rows, here = [], machine()
    print(json.dumps({"machine": here}), flush=True)
    tasks = args.tasks.split(",")
    if args.save_logits:
        args.save_logits.mkdir(parents=True, exist_ok=True)
    for name, descriptions, shots, seed, texts, labels, dev_texts, dev_labels in task_samples(
            args.data, tasks, [int(s) for s in args.seeds.split(",")]):
        for with_desc in (False, True):
            start = time.perf_counter()
            lab = SetFitLabeler(descriptions=descriptions if with_desc else None, seed=seed,
                                **crossfit).fit(texts, labels)
            seconds = time.perf_counter() - start
            classes = len(lab.classes)
            y = np.array([lab.classes.index(v) for v in labels])
            gold = np.array([lab.classes.index(v) for v in dev_labels])
            dev_logits = lab.decision_function(dev_texts)
            scale = lab.settings["description_scale"]
            started = time.perf_counter()
            anchors_u = encode(untuned, [descriptions[c] for c in lab.classes]) if with_desc else None
            emb_u = encode(untuned, texts)
            loo_u = leave_one_out(emb_u, y, classes, anchors_u, scale)
            emb_t = encode(lab.body, texts)
            anchors_t = encode(lab.body, [descriptions[c] for c in lab.classes]) if with_desc else None
            loo_t = leave_one_out(emb_t, y, classes, anchors_t, scale)
            widen = in_sample_margin(emb_t, y, classes, anchors_t, scale) / in_sample_margin(
                emb_u, y, classes, anchors_u, scale)
            rule_seconds = time.perf_counter() - started
            temperatures = {"none": 1.0, "untuned-loo": fit_temperature(loo_u, y, prior_sd=1.0),
                            "untuned-loo-scaled": fit_temperature(widen * loo_u, y, prior_sd=1.0),
                            "tuned-loo": fit_temperature(loo_t, y, prior_sd=1.0),
                            "oracle": fit_temperature(dev_logits, gold)}
            row = {"dataset": name, "seed": seed, "descriptions": with_desc, "fit_s": seconds,
                   "rule_s": rule_seconds, "widen": widen,
                   "loo_accuracy_untuned": float((loo_u.argmax(1) == y).mean()),
                   "loo_accuracy_tuned": float((loo_t.argmax(1) == y).mean())}
            for rule, t in temperatures.items():
                s = scores(softmax(dev_logits / t), lab.classes, dev_labels)
                row[rule] = {"temperature": t, "ece": s["ece"], "accuracy": s["accuracy"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.save_logits:
                stem = f"{name.replace(':', '-').replace('/', '-').replace(' ', '_')}-{seed}-{int(with_desc)}"
                np.savez(args.save_logits / f"{stem}.npz", task=name, seed=seed, descriptions=with_desc,
                         loo_untuned=loo_u, loo_tuned=loo_t, train_labels=y, dev=dev_logits, dev_labels=gold,
                         train=lab.decision_function(texts), widen=widen, fit_seconds=seconds,
                         **({"oof": lab.out_of_fold_logits} if args.crossfit else {}))
    print("\n" + "task".ljust(39) + "descriptions  " + "  ".join(f"{r:>20}" for r in RULES)
          + "   (ECE mean over samples; mean T)")
    for name in tasks:
        for with_desc in (False, True):
            sel = [r for r in rows if r["dataset"] == name and r["descriptions"] == with_desc]
            cells = [f"{statistics.mean(r[k]['ece'] for r in sel):.3f} "
                     f"(T {statistics.mean(r[k]['temperature'] for r in sel):.2f})" for k in RULES]
            print(f"{name:38} {with_desc!s:13} " + "  ".join(f"{c:>20}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps({"machine": here, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
