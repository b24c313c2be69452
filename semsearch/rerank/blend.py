"""How a reranker's order is blended with the first stage's, and fitting that blend on judged queries.

The cross-encoder's scores and the first-stage rank are each min-max scaled within a query and mixed
with weight ``w`` on the first stage (:func:`blend_order`): ``w = 0`` is the cross-encoder's own order,
``w`` near 1 keeps the first stage's. :func:`tune_rerank_weight` fits ``w`` for one index's first stage.

>>> blend_order(["a", "b", "c"], [0.1, 0.9, 0.5], weight=0.0)
['b', 'c', 'a']
>>> blend_order(["a", "b", "c"], [0.1, 0.9, 0.5], weight=0.9)
['a', 'b', 'c']
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..errors import BadInput
from ..metrics import best_on_grid, judged_queries

if TYPE_CHECKING:
    from .reranker import Reranker

__all__ = ["blend_order", "check_candidates", "tune_rerank_weight"]

log = logging.getLogger(__name__)


def blend_order(ids: Sequence[str], rerank_scores: np.ndarray, weight: float) -> list[str]:
    """Order ``ids`` (given in first-stage order) by (1 - weight)·reranker + weight·first stage,
    each min-max scaled within the query; the first stage contributes by rank (1 at the top, 0 at the bottom)."""
    n = len(ids)
    if n == 0:
        return []
    r = np.asarray(rerank_scores, dtype=np.float64)
    span = r.max() - r.min()
    r = (r - r.min()) / span if span > 0 else np.zeros(n)
    first = 1.0 - np.arange(n) / max(1, n - 1)
    fused = (1 - weight) * r + weight * first
    return [ids[i] for i in np.argsort(-fused, kind="stable")]


def check_candidates(k: int, candidates: int) -> None:
    """Raise :class:`BadInput` unless ``candidates`` is a positive integer of at least ``k``."""
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
        raise BadInput(f"candidates must be a positive integer, got {candidates!r}")
    if k > candidates:
        raise BadInput(f"k ({k}) is larger than candidates ({candidates}): the reranker returns at most what it reads")


def tune_rerank_weight(
    engine,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    reranker: "Reranker",
    *,
    candidates: int = 20,
    mode: str | None = None,
    weights: Sequence[float] | None = None,
    save: bool = True,
) -> "Reranker":
    """Fit the reranker's first-stage blend weight (see :func:`blend_order`) for the first stage of
    ``engine`` (a :class:`~semsearch.SearchEngine`): the weight (0 to 0.95 in steps of 0.05 by default)
    with the best nDCG@10 of the reranked top ``candidates``. Returns a copy of the reranker with that
    weight (the model is shared); with ``save`` it becomes the index's default reranker.

    Use queries the reranker was **not** trained on (a reranker made by :func:`semsearch.train_reranker`
    lists the ones it held out in ``validation_queries.json``): on its own training queries it is
    over-confident and the fitted weight comes out too low.
    """
    qids, texts = judged_queries(queries, qrels)
    mode = engine.check_mode(mode)
    check_candidates(1, candidates)
    weights = [round(float(w), 4) for w in (np.arange(20) * 0.05 if weights is None else weights)]
    if not weights or not all(0 <= w < 1 for w in weights):
        raise BadInput(f"blend weights must be in [0, 1), got {weights}")
    hits = engine.first_stage(texts, candidates, mode)
    per_query = [scores for scores, _ in reranker.score_hits(texts, hits)]  # the pairs rerank reads

    def run_of(w: float) -> dict[str, list[str]]:
        return {q: blend_order([h.id for h in hs], sc, w) for q, hs, sc in zip(qids, hits, per_query)}

    weight, ndcg, judged = best_on_grid(weights, run_of, qrels)
    tuned = copy.copy(reranker)
    tuned.first_stage_weight = weight
    tuned.tuned_on = {"queries": judged, "mode": mode, "candidates": candidates, "ndcg_at_10": round(ndcg, 4)}
    log.info("reranker blend weight tuned on %d queries (%s first stage, top %d): %.2f (nDCG@10 %.4f)",
             judged, mode, candidates, weight, ndcg)
    if save:
        engine.set_default_reranker(tuned)
    return tuned
