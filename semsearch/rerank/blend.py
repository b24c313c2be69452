"""How a reranker's order is blended with the first stage's, and whether the reranker helps at all.

The cross-encoder's scores and the first-stage rank are each min-max scaled within a query and mixed
with weight ``w`` on the first stage (:func:`blend_order`): ``w = 0`` is the cross-encoder's own order,
``w = 1`` the first stage's. :func:`check_blend` fits ``w`` on judged queries and measures, cross-fitted,
what the reranker gains over the first stage; a reranker that gains nothing is blended at ``w = 1``.
:func:`tune_rerank_weight` does this for one index's first stage.

>>> blend_order(["a", "b", "c"], [0.1, 0.9, 0.5], weight=0.0)
['b', 'c', 'a']
>>> blend_order(["a", "b", "c"], [0.1, 0.9, 0.5], weight=0.9)
['a', 'b', 'c']
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import BadInput
from ..metrics import judged_queries, ndcg_at_k

if TYPE_CHECKING:
    from .reranker import Reranker

__all__ = ["BLEND_WEIGHTS", "MARGIN_SE", "BlendCheck", "blend_order", "check_blend", "check_candidates",
           "default_candidates", "fitted_candidates", "tune_rerank_weight"]

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


#: The blend weights tried: 0 (the cross-encoder's own order) to 1 (the first stage's order) in steps of 0.05.
BLEND_WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))
#: A reranker is kept when its cross-fitted gain exceeds this many standard errors (a reranker of pure
#: noise passes a bare "gain > 0" about a third of the time on 40 queries; one standard error, about 1 in 7).
MARGIN_SE = 1.0


@dataclass(frozen=True)
class BlendCheck:
    """Whether a reranker helps a first stage, measured on judged queries it was not trained on.

    ``weight`` is the blend weight fitted on all the queries (1.0, the first stage's order, when the
    reranker did not help). ``gain`` is the held-out nDCG@10 gain over the first stage, **cross-fitted**:
    the queries are split into ``folds``; each fold is blended at the weight that is best on the other
    folds, so the weight is never chosen on the queries that judge it. ``gain_se`` is its standard
    error over queries, ``fold_weights`` the weights the folds chose (how settled the weight is).
    """

    weight: float
    gain: float
    gain_se: float
    queries: int
    folds: int
    fold_weights: tuple[float, ...]
    first_stage_ndcg10: float
    reranked_ndcg10: float
    fitted_ndcg10: float
    source: str = "held-out queries"

    @property
    def held_out_ndcg10(self) -> float:
        """The cross-fitted nDCG@10 of the blend: the first stage's plus the gain."""
        return self.first_stage_ndcg10 + self.gain

    @property
    def useful(self) -> bool:
        """True when the cross-fitted held-out gain is positive by more than :data:`MARGIN_SE` standard
        errors; otherwise the weight is 1."""
        return self.gain > MARGIN_SE * self.gain_se and self.gain > 0

    def summary(self) -> str:
        """One sentence saying what was measured and what it means for the blend."""
        gain = f"{self.gain:+.4f} ± {self.gain_se:.4f}"
        how = f"{self.queries} {self.source}, cross-fitted over {self.folds} folds"
        if self.useful:
            return (f"blend weight {self.weight:.2f} on the first stage: held-out nDCG@10 gain {gain} over the first "
                    f"stage ({self.first_stage_ndcg10:.4f}) on {how}")
        return (f"the reranker did not beat the first stage on {how} (nDCG@10 gain {gain}, not above one standard "
                f"error); it is blended at weight 1, i.e. results keep the first stage's order")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fold_weights": list(self.fold_weights), "useful": self.useful}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BlendCheck":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "fold_weights" else v) for k, v in d.items() if k in fields})


def check_blend(
    rankings: Sequence[Sequence[str]],
    rerank_scores: Sequence[np.ndarray],
    grades: Sequence[Mapping[str, int]],
    *,
    folds: int = 5,
    seed: int = 0,
    weights: Sequence[float] = BLEND_WEIGHTS,
    source: str = "held-out queries",
) -> BlendCheck:
    """Fit the blend weight of a reranker with a first stage and measure its held-out gain (see :class:`BlendCheck`).

    ``rankings[i]`` are query *i*'s candidates in first-stage order, ``rerank_scores[i]`` the reranker's
    scores of them and ``grades[i]`` its relevance judgements. Ties between weights go to the larger
    weight (closer to the first stage). The reranker is kept (``useful``) when its cross-fitted gain is
    above :data:`MARGIN_SE` standard errors; otherwise the weight is 1. Needs at least 2 queries.

    >>> good = check_blend([["a", "b"], ["c", "d"]], [np.array([0.0, 1.0])] * 2, [{"b": 1}, {"d": 1}], folds=2)
    >>> good.useful, good.weight
    (True, 0.45)
    >>> bad = check_blend([["a", "b"], ["c", "d"]], [np.array([1.0, 0.0])] * 2, [{"a": 1}, {"c": 1}], folds=2)
    >>> bad.useful, bad.weight, bad.gain
    (False, 1.0, 0.0)
    """
    n = len(rankings)
    if not n == len(rerank_scores) == len(grades):
        raise BadInput("rankings, scores and grades must have one entry per query")
    if n < 2:
        raise BadInput(f"checking a reranker needs at least 2 judged queries, got {n}")
    weights = sorted({round(float(w), 4) for w in weights} | {1.0})
    if not all(0 <= w <= 1 for w in weights):
        raise BadInput(f"blend weights must be in [0, 1], got {weights}")
    table = np.array([[ndcg_at_k(blend_order(list(ids), sc, w), rel, 10) for w in weights]
                      for ids, sc, rel in zip(rankings, rerank_scores, grades)])
    first = weights.index(1.0)

    def best(rows: np.ndarray) -> int:  # the largest weight among the best
        means = table[rows].mean(axis=0)
        return int(np.flatnonzero(means >= means.max() - 1e-12)[-1])

    folds = max(2, min(int(folds), n))
    order = np.random.default_rng(seed).permutation(n)
    assigned = np.empty(n, dtype=int)
    assigned[order] = np.arange(n) % folds
    gains, chosen = np.empty(n), []
    for f in range(folds):
        held = assigned == f
        w = best(~held)
        chosen.append(weights[w])
        gains[held] = table[held, w] - table[held, first]
    fitted = best(np.ones(n, dtype=bool))
    gain, se = float(gains.mean()), float(gains.std(ddof=1) / np.sqrt(n))
    useful = gain > 0 and gain > MARGIN_SE * se
    return BlendCheck(
        weight=weights[fitted] if useful else 1.0, gain=gain, gain_se=se,
        queries=n, folds=folds, fold_weights=tuple(chosen), first_stage_ndcg10=float(table[:, first].mean()),
        reranked_ndcg10=float(table[:, 0].mean()) if weights[0] == 0 else float("nan"),
        fitted_ndcg10=float(table[:, fitted if useful else first].mean()), source=source,
    )


def fitted_candidates(reranker) -> int | None:
    """The first-stage hits per query the reranker's blend weight was fitted on: by ``semsearch tune --rerank``
    for an index (``tuned_on``), else while training (``trained_candidates``); ``None`` if not recorded."""
    tuned = getattr(reranker, "tuned_on", None) or {}
    found = tuned.get("candidates") or getattr(reranker, "trained_candidates", None)
    return int(found) if found else None


def default_candidates(reranker, k: int) -> int:
    """How many first-stage hits to rerank when not told: the count the reranker's blend weight was fitted on
    (:func:`fitted_candidates`), else 50; never fewer than ``k``, the hits asked for.

    >>> default_candidates(None, 10), default_candidates(None, 80)
    (50, 80)
    """
    return max(fitted_candidates(reranker) or 50, k)


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
    weights: Sequence[float] = BLEND_WEIGHTS,
    folds: int = 5,
    save: bool = True,
) -> "Reranker":
    """Fit the reranker's first-stage blend weight (see :func:`blend_order`) for the first stage of
    ``engine`` (a :class:`~semsearch.SearchEngine`) on judged queries, and check that it helps
    (:func:`check_blend`, cross-fitted over ``folds``): the weight with the best nDCG@10 of the reranked
    top ``candidates``, or 1 (the first stage's order) when the held-out gain is not positive. Returns a
    copy of the reranker with that weight (the model is shared) whose ``tuned_on`` holds the check; with
    ``save`` it becomes the index's default reranker.

    Use queries the reranker was **not** trained on (a reranker made by :func:`semsearch.train_reranker`
    lists the ones it held out in ``validation_queries.json``): on its own training queries it is
    over-confident and the fitted weight comes out too low.
    """
    qids, texts = judged_queries(queries, qrels)
    mode = engine.check_mode(mode)
    check_candidates(1, candidates)
    if len(qids) < 2:
        raise BadInput(f"tuning a reranker needs at least 2 judged queries, got {len(qids)}")
    hits = engine.first_stage(texts, candidates, mode)
    per_query = [scores for scores, _ in reranker.score_hits(texts, hits)]  # the pairs rerank reads
    check = check_blend([[h.id for h in hs] for hs in hits], per_query, [qrels[q] for q in qids], folds=folds,
                        weights=weights, source="tuning queries")
    tuned = copy.copy(reranker)
    tuned.first_stage_weight = check.weight
    tuned.tuned_on = {"queries": check.queries, "mode": mode, "candidates": candidates, "blend_of": "logits",
                      "ndcg_at_10": round(check.fitted_ndcg10, 4), "check": check.to_dict()}
    (log.info if check.useful else log.warning)("reranker %s on the %s first stage (top %d): %s", reranker.name,
                                                mode, candidates, check.summary())
    if save:
        engine.set_default_reranker(tuned)
    return tuned
