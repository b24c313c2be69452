"""Retrieval metrics on ranked lists, following the BEIR / pytrec_eval conventions.

A *run* maps a query id to its ranked document ids (best first); *qrels* map a
query id to ``{doc_id: grade}``. A document is relevant when its grade is at
least 1; nDCG uses the grade as a linear gain with a log2(rank + 1) discount.

>>> ndcg_at_k(["a", "b", "c"], {"b": 1}, k=10)      # 1 / log2(3)
0.6309297535714575
>>> mrr_at_k(["a", "b", "c"], {"b": 1}, k=10)
0.5
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence, TypeVar

from .errors import BadInput
from .types import EvalResult

__all__ = ["ndcg_at_k", "mrr_at_k", "recall_at_k", "average_precision_at_k", "evaluate_run", "judged_queries",
           "best_on_grid"]

T = TypeVar("T")


def ndcg_at_k(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k``."""
    dcg = sum(max(grades.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 if none)."""
    for i, d in enumerate(ranking[:k]):
        if grades.get(d, 0) >= 1:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    relevant = sum(1 for g in grades.values() if g >= 1)
    if relevant == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if grades.get(d, 0) >= 1) / relevant


def average_precision_at_k(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Sum of precision at each relevant hit in the top ``k``, over all relevant documents (trec_eval's map_cut)."""
    relevant = sum(1 for g in grades.values() if g >= 1)
    if relevant == 0:
        return 0.0
    found, total = 0, 0.0
    for i, d in enumerate(ranking[:k]):
        if grades.get(d, 0) >= 1:
            found += 1
            total += found / (i + 1)
    return total / relevant


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> EvalResult:
    """Mean nDCG@10, MRR@10, Recall@100 and MAP@100 over the queries of ``qrels`` that have a relevant document.

    A judged query missing from ``run`` counts as retrieving nothing (score 0).
    """
    judged = [q for q, grades in qrels.items() if any(g >= 1 for g in grades.values())]
    if not judged:
        return EvalResult(0.0, 0.0, 0.0, 0.0, 0)

    def mean(metric, k: int) -> float:
        return sum(metric(list(run.get(q, ())), qrels[q], k) for q in judged) / len(judged)

    return EvalResult(
        ndcg_at_10=mean(ndcg_at_k, 10),
        mrr_at_10=mean(mrr_at_k, 10),
        recall_at_100=mean(recall_at_k, 100),
        map_at_100=mean(average_precision_at_k, 100),
        queries=len(judged),
    )


def judged_queries(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]) -> tuple[list[str], list[str]]:
    """The ids and texts of the judged queries (those in ``qrels``), which must all be in ``queries``."""
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise BadInput(f"{len(missing)} judged queries are not in the queries file (first: {missing[0]!r})")
    qids = list(qrels)
    if not qids:
        raise BadInput("no judged queries: the qrels are empty")
    texts = [queries[q] for q in qids]
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise BadInput(f"a query must be non-empty text, got {text!r}")
    return qids, texts


def best_on_grid(grid: Sequence[T], run_of: Callable[[T], Mapping[str, Sequence[str]]],
                 qrels: Mapping[str, Mapping[str, int]]) -> tuple[T, float, int]:
    """The grid point whose run has the best nDCG@10 (the earlier on ties), its nDCG@10, and the query count."""
    best: tuple[T, float, int] | None = None
    for point in grid:
        result = evaluate_run(run_of(point), qrels)
        if best is None or result.ndcg_at_10 > best[1] + 1e-12:
            best = (point, result.ndcg_at_10, result.queries)
    return best
