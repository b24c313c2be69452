"""Stage 3 — labels from scores: a calibrated threshold fitted on a few labelled examples.

:class:`ThresholdLabeler` turns one score per item (a cross-encoder's logit, a
probability, a bi-encoder cosine) into a yes/no label with a calibrated
probability. It records which kind of score it was fitted on and refuses another.

>>> import numpy as np
>>> lab = ThresholdLabeler(score_kind="logit").fit(np.array([-2.0, -1.0, 1.0, 2.0]), [0, 0, 1, 1])
>>> lab.predict(np.array([-3.0, 3.0]))
['no', 'yes']
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadInput, ManifestMismatch
from ..files import atomic_write_text
from ..version import __version__

__all__ = ["ThresholdLabeler", "ThresholdFit", "expected_calibration_error", "OBJECTIVES", "CALIBRATIONS", "ABSTAIN"]

OBJECTIVES = ("f1", "precision")
CALIBRATIONS = ("auto", "platt", "isotonic")
SCORE_KINDS = ("logit", "probability", "cosine")
ABSTAIN = "abstain"
#: With ``calibration="auto"``, isotonic regression needs at least this many examples (else Platt scaling).
ISOTONIC_MIN_EXAMPLES = 200
_FORMAT = "semsearch-threshold-labeler/1"


@dataclass(frozen=True)
class ThresholdFit:
    """How the threshold was chosen, and how well it does on the examples it was fitted on."""

    threshold: float
    objective: str
    target_precision: float | None
    calibration: str
    examples: int
    positives: int
    precision: float
    recall: float
    f1: float
    ece_raw: float
    ece_calibrated: float


class ThresholdLabeler:
    """A decision threshold plus a probability calibration, fitted on a few labelled scores.

    Args:
        objective: ``"f1"`` (maximise F1) or ``"precision"`` (the lowest threshold that reaches
            ``target_precision``, i.e. the most recall at that precision).
        calibration: ``"platt"`` (logistic fit of the score), ``"isotonic"`` (monotone step fit), or
            ``"auto"``: isotonic from :data:`ISOTONIC_MIN_EXAMPLES` examples, Platt below.
        abstain_band: predict :data:`ABSTAIN` when the calibrated probability is within this
            distance of the probability at the threshold (0 = never abstain).
        score_kind, model: what the scores are (``logit``, ``probability``, ``cosine``) and which model
            made them; stored, and checked by :meth:`check_source`.
        labels: names of the (negative, positive) labels.
    """

    def __init__(
        self,
        *,
        objective: str = "f1",
        target_precision: float | None = None,
        calibration: str = "auto",
        abstain_band: float = 0.0,
        score_kind: str = "logit",
        model: str | None = None,
        labels: tuple[str, str] = ("no", "yes"),
    ):
        if objective not in OBJECTIVES:
            raise BadInput(f"unknown objective {objective!r}; valid values are: {', '.join(OBJECTIVES)}")
        if objective == "precision" and not (target_precision is not None and 0 < target_precision <= 1):
            raise BadInput("objective 'precision' needs a target precision in (0, 1]")
        if calibration not in CALIBRATIONS:
            raise BadInput(f"unknown calibration {calibration!r}; valid values are: {', '.join(CALIBRATIONS)}")
        if score_kind not in SCORE_KINDS:
            raise BadInput(f"unknown score kind {score_kind!r}; valid values are: {', '.join(SCORE_KINDS)}")
        if not 0 <= abstain_band < 0.5:
            raise BadInput(f"abstain band must be in [0, 0.5), got {abstain_band}")
        if len(labels) != 2 or labels[0] == labels[1] or ABSTAIN in labels:
            raise BadInput(f"labels must be two distinct names other than {ABSTAIN!r}")
        self.objective, self.target_precision, self.calibration = objective, target_precision, calibration
        self.abstain_band, self.score_kind, self.model, self.labels = abstain_band, score_kind, model, tuple(labels)
        self.fit_report: ThresholdFit | None = None
        self._platt: tuple[float, float] | None = None
        self._isotonic: tuple[np.ndarray, np.ndarray] | None = None

    # --- fitting --------------------------------------------------------------------------

    def fit(self, scores: Sequence[float], labels: Sequence[Any]) -> "ThresholdLabeler":
        """Fit on labelled examples; ``labels`` are bools/0-1 or the two label names."""
        s = _scores(scores)
        y = self._targets(labels, len(s))
        if y.all() or not y.any():
            raise BadInput("need labelled examples of both classes to fit a threshold")
        threshold, precision, recall, f1 = _choose_threshold(s, y, self.objective, self.target_precision)
        method = self.calibration
        if method == "auto":
            method = "isotonic" if len(s) >= ISOTONIC_MIN_EXAMPLES else "platt"
        self._threshold = threshold
        self._platt = _fit_platt(s, y) if method == "platt" else None
        self._isotonic = _fit_isotonic(s, y) if method == "isotonic" else None
        raw = 1 / (1 + np.exp(-s)) if self.score_kind == "logit" else np.clip(s, 0, 1)
        self.fit_report = ThresholdFit(
            threshold=threshold, objective=self.objective, target_precision=self.target_precision,
            calibration=method, examples=len(s), positives=int(y.sum()), precision=precision, recall=recall,
            f1=f1, ece_raw=expected_calibration_error(raw, y),
            ece_calibrated=expected_calibration_error(self.predict_proba(s), y),
        )
        return self

    def _targets(self, labels: Sequence[Any], n: int) -> np.ndarray:
        labels = list(labels)
        if len(labels) != n:
            raise BadInput(f"{n} scores but {len(labels)} labels")
        out = []
        for value in labels:
            if isinstance(value, str):
                if value not in self.labels:
                    raise BadInput(f"unknown label {value!r}; valid values are: {', '.join(self.labels)}")
                out.append(value == self.labels[1])
            elif value in (0, 1, True, False):
                out.append(bool(value))
            else:
                raise BadInput(f"label {value!r} is neither a label name nor 0/1")
        return np.asarray(out, dtype=bool)

    # --- predicting -----------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        self._check_fitted()
        return self._threshold

    def predict_proba(self, scores: Sequence[float]) -> np.ndarray:
        """Calibrated probability of the positive label for each score."""
        self._check_fitted()
        s = _scores(scores, allow_empty=True)
        if self._platt is not None:
            a, b = self._platt
            return 1 / (1 + np.exp(-(a * s + b)))
        xs, ps = self._isotonic
        return np.interp(s, xs, ps)

    def predict(self, scores: Sequence[float]) -> list[str]:
        """A label per score: positive at or above the threshold, or :data:`ABSTAIN` inside the band."""
        s = _scores(scores, allow_empty=True)
        out = [self.labels[1] if v >= self.threshold else self.labels[0] for v in s]
        if self.abstain_band > 0:
            p, p_at = self.predict_proba(s), float(self.predict_proba([self.threshold])[0])
            out = [ABSTAIN if abs(pi - p_at) < self.abstain_band else label for pi, label in zip(p, out)]
        return out

    def check_source(self, score_kind: str, model: str | None = None) -> None:
        """Raise :class:`ManifestMismatch` unless scores of this kind (and model) are what it was fitted on."""
        if score_kind != self.score_kind or (self.model and model and model != self.model):
            raise ManifestMismatch(
                f"this labeller was fitted on {self.score_kind} scores"
                f"{f' of {self.model}' if self.model else ''}, not {score_kind} scores"
                f"{f' of {model}' if model else ''}"
            )

    # --- saving ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted labeller as plain JSON-able data (what :meth:`save` writes)."""
        self._check_fitted()
        return {
            "format": _FORMAT, "semsearch_version": __version__, "score_kind": self.score_kind, "model": self.model,
            "labels": list(self.labels), "objective": self.objective, "target_precision": self.target_precision,
            "calibration": self.calibration, "abstain_band": self.abstain_band, "fit": asdict(self.fit_report),
            "platt": list(self._platt) if self._platt else None,
            "isotonic": [self._isotonic[0].tolist(), self._isotonic[1].tolist()] if self._isotonic else None,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted labeller to the JSON file ``path``, replacing it whole (never half-written)."""
        try:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise BadInput(f"cannot write labeller {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ThresholdLabeler":
        """A labeller written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read labeller {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ManifestMismatch(f"{path} is not a semsearch threshold labeller ({_FORMAT})")
        try:
            lab = cls(objective=data["objective"], target_precision=data["target_precision"],
                      calibration=data["calibration"], abstain_band=data["abstain_band"],
                      score_kind=data["score_kind"], model=data["model"], labels=tuple(data["labels"]))
            lab.fit_report = ThresholdFit(**data["fit"])
            lab._threshold = lab.fit_report.threshold
            lab._platt = tuple(data["platt"]) if data["platt"] else None
            lab._isotonic = (tuple(np.asarray(v, dtype=np.float64) for v in data["isotonic"])
                             if data["isotonic"] else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestMismatch(f"{path} is a damaged threshold labeller ({type(exc).__name__}: {exc})") from None
        return lab

    def _check_fitted(self) -> None:
        if self._platt is None and self._isotonic is None:
            raise BadInput("the labeller is not fitted yet; call fit() first")


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float:
    """ECE: the bin-weighted gap between mean predicted probability and observed frequency (equal-width bins)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() / len(p) * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def _scores(scores: Sequence[float], allow_empty: bool = False) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not allow_empty and len(s) == 0:
        raise BadInput("no scores given")
    if not np.isfinite(s).all():
        raise BadInput("scores contain NaN or infinite values")
    return s


def _choose_threshold(s: np.ndarray, y: np.ndarray, objective: str, target: float | None):
    """Best threshold among midpoints of consecutive distinct scores (and the extremes)."""
    values = np.unique(s)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]])
    best = None
    for t in candidates:
        pred = s >= t
        tp = int((pred & y).sum())
        precision = tp / pred.sum() if pred.any() else 1.0
        recall = tp / y.sum()
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if objective == "f1":
            key = (f1, -abs(t))
        else:  # reaching the target with nothing predicted positive does not count
            ok = bool(pred.any()) and precision >= target - 1e-12
            key = (ok, recall if ok else precision, -t)
        if best is None or key > best[0]:
            best = (key, float(t), float(precision), float(recall), float(f1))
    if objective == "precision" and not best[0][0]:
        raise BadInput(f"no threshold reaches precision {target} on these examples (best {best[2]:.3f})")
    return best[1:]


def _fit_platt(s: np.ndarray, y: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a·s + b) by Newton's method, with Platt's smoothed targets."""
    n_pos, n_neg = y.sum(), (~y).sum()
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 0.0, math.log((n_pos + 1) / (n_neg + 1))
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * s + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - t) * s), np.sum(p - t)])
        h = np.array([[np.sum(w * s * s) + 1e-9, np.sum(w * s)], [np.sum(w * s), np.sum(w) + 1e-9]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def _fit_isotonic(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: a non-decreasing step function of the score; returned as interpolation knots."""
    xs, inverse = np.unique(s, return_inverse=True)  # tied scores are one block from the start: the fit
    sums = np.bincount(inverse, weights=y.astype(np.float64))  # must not depend on the order of the rows
    counts = np.bincount(inverse).astype(np.float64)
    blocks: list[list[float]] = []  # [sum, count, min x, max x]
    for x, total, count in zip(xs, sums, counts):
        blocks.append([total, count, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            top = blocks.pop()
            blocks[-1] = [blocks[-1][0] + top[0], blocks[-1][1] + top[1], blocks[-1][2], top[3]]
    knots_x, knots_p = [], []
    for total, count, lo, hi in blocks:
        p = (total + 0.5) / (count + 1.0)  # a little smoothing keeps probabilities off 0 and 1
        knots_x += [lo, hi]
        knots_p += [p, p]
    return np.asarray(knots_x), np.maximum.accumulate(np.asarray(knots_p))  # smoothing must not break monotonicity
