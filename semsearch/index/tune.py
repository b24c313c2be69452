"""Fitting an index's hybrid fusion on judged queries (a reranker's blend weight: :mod:`semsearch.rerank.blend`).

Each side is searched once; then every point of a small grid is scored on the stored results
(nDCG@10), ties going to the earlier grid point. Tune on queries you do not report on (BEIR's
train split).

>>> fusion = tune_fusion(engine, queries, train_qrels)                          # doctest: +SKIP
>>> fusion.method, fusion.weight, fusion.tuned_on["ndcg_at_10"]                 # doctest: +SKIP
('score', 0.45, 0.731)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..errors import BadInput
from ..metrics import best_on_grid, judged_queries
from .fusion import FUSION_DEPTH, FUSION_METHODS, Fusion

if TYPE_CHECKING:
    from .engine import SearchEngine

__all__ = ["tune_fusion"]

log = logging.getLogger(__name__)


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
    engine.check_mode("hybrid")
    if not methods:
        raise BadInput(f"no fusion method to try; valid: {', '.join(FUSION_METHODS)}")
    weights = [round(float(w), 4) for w in (np.linspace(0, 1, 21) if weights is None else weights)]
    grid = [Fusion(method, w) for method in methods for w in weights]  # validates both
    dense = engine.dense_rankings(texts, FUSION_DEPTH, None, 32)
    lexical = engine.lexical_rankings(texts, FUSION_DEPTH, None)
    all_ids = sorted({int(i) for d, lx in zip(dense, lexical) for i in np.concatenate([d[0], lx[0]])})
    names = dict(zip(all_ids, engine.store.string_ids(all_ids)))

    def run_of(fusion: Fusion) -> dict[str, list[str]]:
        return {q: [names[int(i)] for i in fusion.fuse(d, lx)[0][:100]] for q, d, lx in zip(qids, dense, lexical)}

    fusion, ndcg, judged = best_on_grid(grid, run_of, qrels)
    fusion = dataclasses.replace(fusion, tuned_on={"queries": judged, "ndcg_at_10": round(ndcg, 4),
                                                    "methods": list(methods), "weights": len(weights)})
    log.info("fusion tuned on %d queries: %s weight %.2f (nDCG@10 %.4f)", judged, fusion.method, fusion.weight, ndcg)
    if save:
        engine.set_fusion(fusion)
    return fusion
