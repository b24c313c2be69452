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

from typing import TYPE_CHECKING, Callable, Sequence

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
                  vectors: np.ndarray | None, per_hit: int = PASSAGES_PER_HIT,
                  held: Callable[[np.ndarray], np.ndarray | None] | None = None) -> list[dict[int, tuple]]:
    """For each query, ``{document int id: (Passage, …)}``: the document's passages best first (at most
    ``per_hit``). A document of several passages has them scored with the query's vector against the
    passage vectors (every query against every passage in one matrix product): those the vector index
    holds, ``held(passage ids)`` (the scores the dense side ranks by), else those in the store. Without a
    query vector (lexical search), or for a passage stored without a vector, they are scored by how many
    of the query's words each passage holds."""
    wanted = {int(d) for ids in rankings for d in ids}
    spans = store.passages(wanted)
    several = sorted(d for d in wanted if len(spans.get(d, ())) > 1)
    scored: dict[int, int] = {}  # document -> first row of its passages in ``cosines``
    cosines = np.empty((0, len(queries)), np.float32)
    if several and vectors is not None:
        matrix = _held_vectors(held, spans, several, scored)
        if matrix is None:
            matrix = _stored_vectors(store, spans, several, scored)
        if matrix is not None:
            cosines = matrix @ np.asarray(vectors, np.float32).T
    texts = {}
    unscored = [d for d in several if d not in scored]
    if unscored:
        texts = {d: doc.text for d, doc in zip(unscored, store.get(unscored)) if doc is not None}
    out = []
    for q, ids in enumerate(rankings):
        chosen: dict[int, tuple] = {}
        terms = None
        for d in (int(i) for i in ids):
            rows = spans.get(d, ())
            if len(rows) <= 1:
                chosen[d] = tuple(_passage(r, None) for r in rows)
                continue
            if d in scored:
                scores = cosines[scored[d]:scored[d] + len(rows), q].tolist()
            else:
                terms = query_terms(queries[q]) if terms is None else terms
                text = texts.get(d, "")
                scores = [_overlap(terms, text[r[1]:r[2]]) for r in rows]
            order = sorted(range(len(rows)), key=lambda i: -scores[i])[:per_hit]  # stable: ties keep text order
            chosen[d] = tuple(_passage(rows[i], scores[i]) for i in order)
        out.append(chosen)
    return out


def _held_vectors(held, spans: dict, several: list[int], scored: dict[int, int]) -> np.ndarray | None:
    """The passage vectors of the ``several`` documents from the vector index (``None``: it cannot give
    them all); fills ``scored`` with each document's first row."""
    if held is None:
        return None
    ids = np.array([r[0] for d in several for r in spans[d]], dtype=np.int64)
    matrix = held(ids)
    if matrix is None:
        return None
    row = 0
    for d in several:
        scored[d] = row
        row += len(spans[d])
    return np.asarray(matrix, np.float32)


def _stored_vectors(store: "DocStore", spans: dict, several: list[int], scored: dict[int, int]) -> np.ndarray | None:
    """The passage vectors of the ``several`` documents from the store, for the documents all of whose
    passages have one; fills ``scored`` with each such document's first row."""
    stored = store.passages(several, with_vectors=True)
    blocks: list[np.ndarray] = []
    for d in several:
        rows = stored.get(d, [])
        if len(rows) == len(spans[d]) and all(r[4] is not None for r in rows):
            scored[d] = len(blocks)
            blocks += [r[4] for r in rows]
    return np.stack(blocks) if blocks else None


def _passage(row: tuple, score: float | None) -> Passage:
    _, start, end, page = row[:4]
    return Passage(start, end, page, None if score is None else float(score))


def _overlap(terms: set[str], text: str) -> float:
    return float(len(terms & query_terms(text)))
