"""A document's score is its best passage's (MaxP): plain functions on passage-level results.

Searching passages at depth ``k`` may return fewer than ``k`` distinct documents (several passages of
one document), so :func:`maxp_search` deepens the search until ``k`` documents are found or nothing
more is there; for an exact (Flat) index the result equals ranking every document by the best of
its passages' scores. :func:`best_passages` picks the passages a hit shows and the reranker reads.

>>> ids, scores = np.array([(3 << 16) | 1, (3 << 16) | 0, 5 << 16]), np.array([0.9, 0.8, 0.7])
>>> docs, best = max_by_document(ids, scores, 16)
>>> docs.tolist(), best.tolist()
([3, 5], [0.9, 0.7])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..types import Passage
from .passages import query_terms

if TYPE_CHECKING:
    from .lexical import LexicalIndex
    from .store import DocStore
    from .vectors import VectorIndex

__all__ = ["max_by_document", "maxp_search", "maxp_lexical", "best_passages", "PASSAGES_PER_HIT"]

#: Passages a hit carries, best first (the reranker can read the best two).
PASSAGES_PER_HIT = 2


def max_by_document(ids: np.ndarray, scores: np.ndarray, id_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Passage results (best first; id -1 marks an empty slot) as ``(document ids, scores)``, each
    document once with its best passage's score, best first."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    keep = ids >= 0
    ids, scores = ids[keep], scores[keep]
    docs = ids >> np.int64(id_bits)
    if id_bits == 0:
        return docs, scores
    order = np.lexsort((np.arange(len(ids)), -scores))  # by score; ties keep the index's order
    docs, scores = docs[order], scores[order]
    _, first = np.unique(docs, return_index=True)
    first.sort()
    return docs[first], scores[first]


def maxp_search(index: "VectorIndex", vectors: np.ndarray, k: int, allowed: np.ndarray | None, id_bits: int,
                documents: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The top ``k`` documents per query by their best passage: ``(document ids, scores)`` each.

    ``allowed``: passage ids the search is restricted to; ``documents``: how many documents can be
    found at most (the search stops deepening there)."""
    total = index.ntotal if allowed is None else len(allowed)
    k_docs = min(k, documents)
    if total == 0 or len(vectors) == 0:
        return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in range(len(vectors))]
    ratio = max(1.0, total / max(documents, 1))
    depth = min(total, max(k, int(np.ceil(k * min(ratio, 4.0) * 1.5))) if id_bits else k)
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(vectors)
    pending = np.arange(len(vectors))
    while len(pending):
        scores, ids = index.search(vectors[pending], min(depth, total), allowed)
        still = []
        for row, q in enumerate(pending):
            docs, best = max_by_document(ids[row], scores[row], id_bits)
            exhausted = (ids[row] >= 0).sum() < min(depth, total) or depth >= total
            if len(docs) >= k_docs or exhausted:
                out[q] = (docs[:k], best[:k])
            else:
                still.append(q)
        pending = np.array(still, dtype=np.int64)
        depth = min(total, depth * 2)
    return out  # type: ignore[return-value]


def maxp_lexical(lexical: "LexicalIndex", queries: Sequence[str], k: int, allowed: np.ndarray | None,
                 id_bits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BM25 over passages as the top ``k`` documents per query by their best passage, deepening per query
    until ``k`` documents are found or no more passages share a word with the query."""
    out = []
    for query in queries:
        depth = k * 4
        while True:
            ids, scores = lexical.search([query], depth, allowed)[0]
            docs, best = max_by_document(ids, scores, id_bits)
            if len(docs) >= k or len(ids) < depth:
                out.append((docs[:k], best[:k]))
                break
            depth *= 4
    return out


def best_passages(store: "DocStore", rankings: Sequence[np.ndarray], queries: Sequence[str],
                  vectors: np.ndarray | None, per_hit: int = PASSAGES_PER_HIT) -> list[dict[int, tuple]]:
    """For each query, ``{document int id: (Passage, …)}``: the document's passages best first (at most
    ``per_hit``). A document of several passages has them scored with the query's vector against the
    stored passage vectors (exact, the same scores the dense side ranks by); without a query vector
    (lexical search) by how many of the query's words each passage holds."""
    wanted = {int(d) for ids in rankings for d in ids}
    spans = store.passages(wanted)
    several = {d for d in wanted if len(spans.get(d, ())) > 1}
    stored = store.passages(several, with_vectors=True) if several and vectors is not None else {}
    texts = {}
    if several and vectors is None:
        texts = {d: doc.text for d, doc in zip(several, store.get(several)) if doc is not None}
    out = []
    for q, ids in enumerate(rankings):
        chosen: dict[int, tuple] = {}
        terms = query_terms(queries[q]) if vectors is None else set()
        for d in (int(i) for i in ids):
            rows = spans.get(d, ())
            if len(rows) <= 1:
                chosen[d] = tuple(_passage(r, None) for r in rows)
                continue
            if vectors is not None and d in stored:
                scores = np.stack([r[4] for r in stored[d]]) @ vectors[q]
            else:
                text = texts.get(d, "")
                scores = np.array([_overlap(terms, text[r[1]:r[2]]) for r in rows], dtype=np.float32)
            order = np.lexsort((np.arange(len(rows)), -scores))[:per_hit]
            chosen[d] = tuple(_passage(rows[i], float(scores[i])) for i in order)
        out.append(chosen)
    return out


def _passage(row: tuple, score: float | None) -> Passage:
    _, start, end, page = row[:4]
    return Passage(int(start), int(end), None if page is None else int(page), score)


def _overlap(terms: set[str], text: str) -> float:
    return float(len(terms & query_terms(text)))
