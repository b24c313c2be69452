"""Reliability diagrams: how often a labeller is right at each level of its confidence.

Plain functions on numpy arrays. :func:`reliability_bins` sorts predictions into equal-width bins of
confidence (the predicted label's probability) and gives each bin's mean confidence, accuracy and
count; the bin-weighted gap between the two is the expected calibration error (ECE), the number
:func:`~semsearch.label.threshold.expected_calibration_error` reports. :func:`reliability_diagram`
draws one panel per labeller and dataset into a PNG.

>>> bins = reliability_bins([0.9, 0.9, 0.6, 0.6], [True, False, True, True], bins=10)
>>> bins.counts.tolist(), round(bins.ece, 3)
([2, 2], 0.4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import BadInput

__all__ = ["ReliabilityBins", "reliability_bins", "reliability_diagram"]


@dataclass(frozen=True)
class ReliabilityBins:
    """The non-empty bins of a reliability diagram, in order of confidence."""

    #: (lower, upper) confidence edge of each bin
    edges: np.ndarray
    #: the mean confidence of the predictions in each bin
    confidence: np.ndarray
    #: the fraction of them that were right
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of ``|accuracy - confidence|``."""
        total = self.counts.sum()
        return float((self.counts * np.abs(self.accuracy - self.confidence)).sum() / total) if total else 0.0


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> ReliabilityBins:
    """Bin predictions by ``confidence`` (in [0, 1]; ``bins`` equal-width bins, 1.0 in the last one)."""
    p = np.asarray(confidence, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(p) != len(y):
        raise BadInput(f"{len(p)} confidences but {len(y)} outcomes")
    if bins < 1:
        raise BadInput(f"bins must be at least 1, not {bins}")
    if len(p) and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise BadInput("confidences must be probabilities in [0, 1]")
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    kept = np.flatnonzero(counts)
    sums_p, sums_y = np.bincount(which, p, bins), np.bincount(which, y, bins)
    return ReliabilityBins(edges=np.stack([kept / bins, (kept + 1) / bins], axis=1),
                           confidence=sums_p[kept] / counts[kept], accuracy=sums_y[kept] / counts[kept],
                           counts=counts[kept])


def reliability_diagram(panels: Sequence[tuple[str, ReliabilityBins]], path: str | os.PathLike, *,
                        columns: int = 4, title: str | None = None) -> None:
    """Write a PNG with one reliability diagram per ``(title, bins)`` panel: each bin's accuracy as a bar
    over its confidence range, the diagonal (perfect calibration), the bin's mean confidence as a dot,
    and the ECE in the panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise BadInput("no panels to draw")
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, b) in zip(axes.flat, panels):
        ax.bar(b.edges[:, 0], b.accuracy, width=b.edges[:, 1] - b.edges[:, 0], align="edge", color="C0",
               alpha=0.7, edgecolor="white", label="accuracy")
        ax.plot(b.confidence, b.accuracy, "o", color="C1", markersize=3, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="0.4", linewidth=0.8)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE {b.ece:.3f}, {int(b.counts.sum())} texts", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("confidence (predicted label's probability)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
