"""Fitting an index's search settings on judged queries: the hybrid fusion, and a reranker's blend weight.

Both search the index once and then score every point of a small grid on the stored
results (nDCG@10); ties go to the earlier grid point. Tune on queries you do not report
on — BEIR's train split for the fusion, the training queries a reranker held out for its
blend weight.

>>> fusion = tune_fusion(engine, queries, train_qrels)                          # doctest: +SKIP
>>> fusion.method, fusion.weight, fusion.tuned_on["ndcg_at_10"]                 # doctest: +SKIP
('score', 0.45, 0.731)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, TypeVar

import numpy as np

from .engine import FUSION_DEPTH, check_candidates, judged_queries
from .errors import BadInput
from .fusion import FUSION_METHODS, Fusion
from .metrics import evaluate_run
from .rerank import Reranker, blend_order

if TYPE_CHECKING:
    from .engine import SearchEngine

__all__ = ["tune_fusion", "tune_rerank_weight"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _best(grid: Sequence[T], run_of: Callable[[T], dict[str, list[str]]],
          qrels: Mapping[str, Mapping[str, int]]) -> tuple[T, float, int]:
    """The grid point whose run has the best nDCG@10 (the earlier on ties), its score, and the query count."""
    best: tuple[T, float, int] | None = None
    for point in grid:
        result = evaluate_run(run_of(point), qrels)
        if best is None or result.ndcg_at_10 > best[1] + 1e-12:
            best = (point, result.ndcg_at_10, result.queries)
    return best


def tune_fusion(
    engine: "SearchEngine",
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    methods: Sequence[str] = FUSION_METHODS,
    weights: Sequence[float] | None = None,
    save: bool = True,
) -> Fusion:
    """The fusion (method and dense weight; weights 0 to 1 in steps of 0.05 by default) with the best
    nDCG@10 on judged queries, each side searched once (top 100). With ``save`` it is stored in the
    manifest, so later hybrid searches use it."""
    qids, texts = judged_queries(queries, qrels)
    engine._check_mode("hybrid")
    if not methods:
        raise BadInput(f"no fusion method to try; valid: {', '.join(FUSION_METHODS)}")
    weights = [round(float(w), 4) for w in (np.linspace(0, 1, 21) if weights is None else weights)]
    grid = [Fusion(method, w) for method in methods for w in weights]  # validates both
    dense = engine._dense_rankings(texts, FUSION_DEPTH, None, 32)
    lexical = engine.lexical.search(texts, FUSION_DEPTH, None)
    all_ids = sorted({int(i) for d, lx in zip(dense, lexical) for i in np.concatenate([d[0], lx[0]])})
    names = dict(zip(all_ids, engine.store.string_ids(all_ids)))

    def run_of(fusion: Fusion) -> dict[str, list[str]]:
        return {q: [names[int(i)] for i in fusion.fuse(d, lx)[0][:100]] for q, d, lx in zip(qids, dense, lexical)}

    fusion, ndcg, judged = _best(grid, run_of, qrels)
    fusion = dataclasses.replace(fusion, tuned_on={"queries": judged, "ndcg_at_10": round(ndcg, 4),
                                                    "methods": list(methods), "weights": len(weights)})
    log.info("fusion tuned on %d queries: %s weight %.2f (nDCG@10 %.4f)", judged, fusion.method, fusion.weight, ndcg)
    if save:
        engine.set_fusion(fusion)
    return fusion


def tune_rerank_weight(
    engine: "SearchEngine",
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    reranker: Reranker,
    *,
    candidates: int = 20,
    mode: str | None = None,
    weights: Sequence[float] | None = None,
    save: bool = True,
) -> Reranker:
    """Fit the reranker's first-stage blend weight (see :func:`semsearch.rerank.blend_order`) for this
    index's first stage: the weight (0 to 0.95 in steps of 0.05 by default) with the best nDCG@10 of
    the reranked top ``candidates``. Returns a copy of the reranker with that weight (the model is
    shared); with ``save`` it becomes the index's default reranker.

    Use queries the reranker was **not** trained on (a reranker made by :func:`semsearch.train_reranker`
    lists the ones it held out in ``validation_queries.json``): on its own training queries it is
    over-confident and the fitted weight comes out too low.
    """
    qids, texts = judged_queries(queries, qrels)
    mode = engine._check_mode(mode)
    check_candidates(1, candidates)
    weights = [round(float(w), 4) for w in (np.arange(20) * 0.05 if weights is None else weights)]
    if not weights or not all(0 <= w < 1 for w in weights):
        raise BadInput(f"blend weights must be in [0, 1), got {weights}")
    hits = engine.first_stage(texts, candidates, mode)
    scores = reranker.score([(t, h.embedding_text) for t, hs in zip(texts, hits) for h in hs]).scores
    bounds = np.cumsum([0] + [len(hs) for hs in hits])
    per_query = [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def run_of(w: float) -> dict[str, list[str]]:
        return {q: blend_order([h.id for h in hs], sc, w) for q, hs, sc in zip(qids, hits, per_query)}

    weight, ndcg, judged = _best(weights, run_of, qrels)
    tuned = copy.copy(reranker)
    tuned.first_stage_weight = weight
    tuned.tuned_on = {"queries": judged, "mode": mode, "candidates": candidates, "ndcg_at_10": round(ndcg, 4)}
    log.info("reranker blend weight tuned on %d queries (%s first stage, top %d): %.2f (nDCG@10 %.4f)",
             judged, mode, candidates, weight, ndcg)
    if save:
        engine.set_default_reranker(tuned)
    return tuned
