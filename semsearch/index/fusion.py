"""Hybrid retrieval: fuse a dense and a lexical ranking of one query into one.

Plain functions on ``(ids, scores)`` rankings, best first:

- :func:`rrf` — reciprocal rank fusion, ``w / (k + rank_dense) + (1 - w) / (k + rank_lexical)``
  (``w = 0.5`` is plain RRF up to a constant factor);
- :func:`score_fusion` — each side's scores min-max normalised over its list, then
  ``w * dense + (1 - w) * lexical`` (a document missing from one side gets 0 there).

Either side may be empty; the other then answers alone.

>>> import numpy as np
>>> dense = (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.1]))
>>> lexical = (np.array([3, 1]), np.array([12.0, 4.0]))
>>> [int(i) for i in rrf(dense, lexical)[0]]
[1, 3, 2]
>>> [int(i) for i in score_fusion(dense, lexical, weight=0.5)[0]]
[1, 3, 2]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import BadInput, ManifestMismatch

__all__ = ["Fusion", "rrf", "score_fusion", "FUSION_METHODS", "FUSION_DEPTH"]

FUSION_METHODS = ("rrf", "score")
#: Each side of a hybrid search contributes its top this-many (or more, when more are asked for).
FUSION_DEPTH = 100
Ranking = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search fuses its two sides: ``method`` (``"rrf"`` or ``"score"``), ``weight``
    of the dense side in [0, 1], ``rrf_k`` (RRF's rank offset), and what it was tuned on, if anything."""

    method: str = "rrf"
    weight: float = 0.5
    rrf_k: int = 60
    tuned_on: dict[str, Any] | None = None

    def __post_init__(self):
        if self.method not in FUSION_METHODS:
            raise BadInput(f"unknown fusion method {self.method!r}; valid: {', '.join(FUSION_METHODS)}")
        if not 0.0 <= self.weight <= 1.0:
            raise BadInput(f"fusion weight must be in [0, 1], got {self.weight}")
        if self.rrf_k < 1:
            raise BadInput(f"rrf_k must be at least 1, got {self.rrf_k}")

    def fuse(self, dense: Ranking, lexical: Ranking) -> Ranking:
        """One ranking from a query's dense and lexical rankings, by :attr:`method` at :attr:`weight`."""
        if self.method == "rrf":
            return rrf(dense, lexical, weight=self.weight, k=self.rrf_k)
        return score_fusion(dense, lexical, weight=self.weight)

    def to_dict(self) -> dict[str, Any]:
        """As the manifest records it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Fusion":
        """A fusion read from the manifest (``None``: plain RRF at weight 0.5)."""
        if not data:
            return cls()
        try:
            return cls(**data)
        except TypeError as exc:
            raise ManifestMismatch(f"the manifest's fusion entry is not one this version reads: {exc}") from None


def _combine(dense_ids: np.ndarray, dense_part: np.ndarray, lexical_ids: np.ndarray, lexical_part: np.ndarray
             ) -> Ranking:
    ids = np.concatenate([dense_ids, lexical_ids]).astype(np.int64)
    parts = np.concatenate([dense_part, lexical_part]).astype(np.float64)
    if len(ids) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    unique, inverse = np.unique(ids, return_inverse=True)
    fused = np.zeros(len(unique))
    np.add.at(fused, inverse, parts)
    # best first; ties broken by the better dense rank, then by lexical rank (first occurrence in `ids`)
    first = np.full(len(unique), len(ids))
    np.minimum.at(first, inverse, np.arange(len(ids)))
    order = np.lexsort((first, -fused))
    return unique[order], fused[order]


def rrf(dense: Ranking, lexical: Ranking, *, weight: float = 0.5, k: int = 60) -> Ranking:
    """Weighted reciprocal rank fusion of two rankings (ranks start at 1); returns ``(ids, scores)``."""
    d_ids, l_ids = np.asarray(dense[0]), np.asarray(lexical[0])
    d = weight / (k + np.arange(1, len(d_ids) + 1))
    lx = (1.0 - weight) / (k + np.arange(1, len(l_ids) + 1))
    return _combine(d_ids, d, l_ids, lx)


def _minmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)


def score_fusion(dense: Ranking, lexical: Ranking, *, weight: float = 0.5) -> Ranking:
    """Min-max normalised score fusion: ``weight * dense + (1 - weight) * lexical``; ``(ids, scores)``."""
    return _combine(np.asarray(dense[0]), weight * _minmax(dense[1]),
                    np.asarray(lexical[0]), (1.0 - weight) * _minmax(lexical[1]))
