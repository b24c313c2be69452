"""Temperature rules for fits too small to cross-fit (16 examples: binary 8-shot), scored on dev splits.

Below :data:`~semsearch.label.crossfit.CROSSFIT_MIN_EXAMPLES` examples ``SetFitLabeler`` fits no temperature,
and no fixed one serves both binary dev sets (SST-2 wants about 2, Subj 1: docs/benchmarks/fewshot.md). A
likely cause: the tuned body pulls its own examples tight around their prototypes, so the head learns
margins that a new text does not get, and how much larger depends on how hard the task is. The rules here
estimate a new text's logits from the training examples alone, without fold models:

- ``none``: T = 1 (today's default).
- ``untuned-loo``: leave-one-out logits of the same head (features, penalty) on the *untuned* body's
  embeddings; T fitted to them (prior sd 1 on log T), as the cross-fitted temperature is to fold models'.
- ``untuned-loo-scaled``: the same logits first scaled by how much tuning widened the in-sample margins
  (median |margin| of the head fitted on all examples, tuned body over untuned body).
- ``tuned-loo``: leave-one-out heads on the tuned body's embeddings (the body saw every example).
- ``oracle``: the log-loss optimum on the dev split itself (a bound, not a rule).

Each fit is ``SetFitLabeler`` at its defaults, with and without descriptions, on the same seeded samples
as ``fewshot_dev.py`` (dev split; seeds apart from the test run's 0-4). ECE: 10 bins, predicted label.

    python benchmarks/fewshot_small_calibration.py [--datasets sst2,subj] [--seeds 10,11,12,13,14,15] \
        [--json docs/fewshot/dev-…-small-calibration-8.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from fewshot import DEFAULT_DATA, machine, samples, scores

from semsearch.label.crossfit import fit_temperature, softmax
from semsearch.label.features import leave_one_out_prototypes, unit_rows

RULES = ("none", "untuned-loo", "untuned-loo-scaled", "tuned-loo", "oracle")


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
    parser.add_argument("--datasets", default="sst2,subj")
    parser.add_argument("--seeds", default="10,11,12,13,14,15")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
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
    for name, descriptions, shots, seed, texts, labels, dev_texts, dev_labels in samples(
            args.data, args.datasets.split(","), [8], [int(s) for s in args.seeds.split(",")], "dev"):
        for with_desc in (False, True):
            start = time.perf_counter()
            lab = SetFitLabeler(descriptions=descriptions if with_desc else None, seed=seed).fit(texts, labels)
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
    print("\ndataset  descriptions  " + "  ".join(f"{r:>20}" for r in RULES) + "   (ECE mean over samples; mean T)")
    for name in args.datasets.split(","):
        for with_desc in (False, True):
            sel = [r for r in rows if r["dataset"] == name and r["descriptions"] == with_desc]
            cells = [f"{statistics.mean(r[k]['ece'] for r in sel):.3f} "
                     f"(T {statistics.mean(r[k]['temperature'] for r in sel):.2f})" for k in RULES]
            print(f"{name:8} {str(with_desc):13} " + "  ".join(f"{c:>20}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps({"machine": here, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
