"""Cross-fitting for :class:`~semsearch.label.setfit.SetFitLabeler`: a temperature from out-of-fold logits.

The few labelled examples are split into stratified folds; a labeller trained on all folds but one
predicts the one left out, so every example gets logits from a model that never saw it. The temperature
that minimises their log loss then scales the full model's logits. Plain functions on numpy arrays; the
labeller supplies the models (``make``), so this module knows nothing about how they are tuned.

>>> folds = stratified_folds(["a", "a", "b", "b"], ["a", "b"], k=2, seed=0)
>>> sorted(len(f) for f in folds)
[2, 2]
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

#: ``calibration="auto"`` cross-fits a temperature from this many examples on (all labels together). A fit
#: below it is *small*: cross-fitted on request, its fold models tune for as many epochs as the full model
#: with no step minimum, and its temperature may only soften the head (T >= 1: :func:`fit_temperature`'s
#: ``soften_only``), chosen on 14 binary dev tasks at 8-shot (docs/benchmarks/fewshot.md).
SMALL_FIT_BELOW = 32
#: with ``tuning="descriptions"``, cross-fitting uses 4 folds below this many examples, else 2 (time).
#: SST-2 64-shot dev split (128 examples, 4 seeds): ECE after the temperature 0.048 with 4 folds, 0.072
#: with 2 (4 of 4 seeds better), 74 s in all; at SST-5 64-shot (320) 4 folds would pass 2 minutes.
CROSSFIT_FOUR_FOLDS_BELOW = 200


def fold_count(tuning: str, labels: Sequence[str], classes: Sequence[str], folds: int | None = None) -> int:
    """``folds``, or by default four for description or prototype tuning below :data:`CROSSFIT_FOUR_FOLDS_BELOW`
    examples, else two; never more than the rarest label has examples.

    >>> fold_count("descriptions", ["a"] * 3 + ["b"] * 8, "ab"), fold_count("prototypes", ["a", "b"] * 8, "ab", 2)
    (3, 2)
    """
    if folds is None:
        folds = 4 if tuning in ("descriptions", "prototypes") and len(labels) < CROSSFIT_FOUR_FOLDS_BELOW else 2
    return min(folds, min(list(labels).count(c) for c in classes))


def stratified_folds(labels: Sequence[str], classes: Sequence[str], k: int, seed: int) -> list[list[int]]:
    """``k`` lists of example indices; each label's examples are shuffled (``seed``) and dealt round the folds."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for c in classes:
        idx = [i for i, y in enumerate(labels) if y == c]
        for j, i in enumerate(rng.permutation(idx)):
            folds[j % k].append(int(i))
    return folds


def fold_jobs(make: Callable[[], object], logits: Callable[[object, list[str]], np.ndarray], texts: Sequence[str],
              labels: Sequence[str], folds: list[list[int]]) -> list[Callable[[], tuple[list[int], np.ndarray]]]:
    """One job per fold: fit ``make()`` on the other folds, return ``(held, logits(model, held texts))``."""
    def job(held: list[int]):
        train = sorted(set(range(len(texts))) - set(held))
        part = make()
        part.fit([texts[i] for i in train], [labels[i] for i in train])
        return held, logits(part, [texts[i] for i in held])

    return [functools.partial(job, held) for held in folds]


def assemble(held_out: list, n: int, classes: int) -> np.ndarray:
    """The ``(n, classes)`` out-of-fold logits from the fold jobs' ``(held, logits)`` results.

    >>> assemble([([1], np.array([[0.0, 2.0]])), ([0], np.array([[3.0, 0.0]]))], n=2, classes=2)
    array([[3., 0.],
           [0., 2.]])
    """
    logits = np.zeros((n, classes))
    for held, part in held_out:
        logits[held] = part
    return logits


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``(n, classes)``, shifted by each row's maximum (no overflow)."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


#: the temperatures considered: evenly spaced in log T (steps of 0.0127), from 0.01 to 100.
GRID = np.exp(np.linspace(np.log(0.01), np.log(100.0), 727))


def log_loss(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean log loss of ``softmax(logits / T)`` on labels ``y`` at every :data:`GRID` temperature."""
    rows = np.arange(len(y))
    return np.array([-np.log(softmax(logits / t)[rows, y] + 1e-12).mean() for t in GRID])


def fit_temperature(logits: np.ndarray, y: np.ndarray, prior_sd: float | None = None,
                    soften_only: bool = False) -> float:
    """The temperature T in [0.01, 100] minimising the log loss of ``softmax(logits / T)`` on labels ``y``.

    With ``prior_sd``, the most probable T under a normal prior on log T centred on 0 (T = 1: the
    head's own scale) with that standard deviation: the summed log loss plus ``(log T)² / (2 prior_sd²)``.
    From few out-of-fold labels the plain minimum is mostly noise; the prior pulls it towards 1 by as
    much as the labels leave it uncertain, and many labels outweigh it. ``soften_only``: T in [1, 100]
    (a few out-of-fold points that are all right say little about how sure the full model should be,
    but wrong ones at high confidence do say it is too sure).

    >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> fit_temperature(z, np.array([0, 1, 1, 0])) > 10     # right half the time: soften a lot
    True
    >>> 1 < fit_temperature(z, np.array([0, 1, 1, 0]), prior_sd=0.5) < 3   # four labels move T less
    True
    >>> right = np.array([0, 1, 0, 1])                           # all right: sharpen, unless only softening
    >>> fit_temperature(z, right) < 1, round(fit_temperature(z, right, soften_only=True), 6)
    (True, 1.0)
    """
    objective = len(y) * log_loss(logits, y)
    if prior_sd is not None:
        objective = objective + np.log(GRID) ** 2 / (2 * prior_sd ** 2)
    if soften_only:
        objective = np.where(GRID >= 1.0, objective, np.inf)
    return float(GRID[int(np.argmin(objective))])
