"""What a reranker in training reads about each query: its first-stage results (hard negatives, the
candidates its check reranks) and each (query, document) pair's text as the reranker will read it.

>>> mined = Mined(data, ["q1"], depth=30, candidates=20, engine=engine, progress=False)   # doctest: +SKIP
>>> draw_negatives(random.Random(0), data.qrels["q1"], mined.ranked["q1"], sorted(data.corpus), 5, 7)  # doctest: +SKIP
"""

from __future__ import annotations

import random
import sys
from typing import Mapping, Sequence

import numpy as np

from ..encode.models import DEFAULT_MODEL
from ..errors import BadInput
from .blend import BlendCheck, check_blend
from .training_data import TrainingData

__all__ = ["Mined", "draw_negatives"]


class Mined:
    """Each query's first-stage results: its dense ranking (hard negatives), the candidates the check
    reranks, and each (query, document)'s text as the reranker reads it (the best passage, when known)."""

    def __init__(self, data: TrainingData, qids: list[str], depth: int, candidates: int, engine, progress: bool):
        self.data = data
        texts = [data.queries[q] for q in qids]
        self.passage: dict[tuple[str, str], str] = {}
        if engine is not None:
            dense = engine.first_stage(texts, depth, "dense")
            checked = engine.first_stage(texts, candidates, None) if candidates else [[] for _ in texts]
            for q, ranked, reranked in zip(qids, dense, checked):
                self.passage.update({(q, h.id): h.passage_texts(1)[0] for h in ranked + reranked})
            self.ranked = {q: [h.id for h in hs] for q, hs in zip(qids, dense)}
            self.candidates = {q: [h.id for h in hs] for q, hs in zip(qids, checked)}
        else:
            self.ranked = embed_and_rank(data, qids, texts, depth, progress)
            self.candidates = {q: ids[:candidates] for q, ids in self.ranked.items()}

    def text(self, qid: str, doc_id: str) -> str:
        return self.passage.get((qid, doc_id)) or self.data.corpus[doc_id].embedding_text

    def positives(self, qids) -> list[tuple[str, str]]:
        return [(q, d) for q in sorted(qids) for d, g in sorted(self.data.qrels[q].items())
                if g >= 1 and d in self.data.corpus]

    def check(self, qids: Sequence[str], scores: Mapping[str, np.ndarray], seed: int, source: str) -> BlendCheck | None:
        if len(qids) < 2:
            return None
        return check_blend([self.candidates[q] for q in qids], [scores[q] for q in qids],
                           [self.data.qrels[q] for q in qids], seed=seed, source=source)


def draw_negatives(rng: random.Random, relevant: Mapping[str, int], ranked: Sequence[str], doc_ids: Sequence[str],
                   hard: int, total: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """``hard`` documents from the first-stage ranking that are not judged relevant (nor excluded), then
    random ones; never a relevant or excluded one. In a corpus too small for ``total`` distinct negatives,
    the ones there are repeat; :class:`BadInput` if there is none."""
    blocked = {d for d, grade in relevant.items() if grade >= 1} | set(exclude)
    pool = [d for d in ranked if d not in blocked]
    chosen = rng.sample(pool, min(hard, len(pool)))
    tries = 0
    while len(chosen) < total:
        d = doc_ids[rng.randrange(len(doc_ids))]
        tries += 1
        if d not in blocked and d not in chosen:
            chosen.append(d)
        elif tries > 20 * total:  # a tiny corpus: too few documents that are not relevant; repeat them
            eligible = [d for d in doc_ids if d not in blocked]
            if not eligible:
                raise BadInput("no document can serve as a negative: every document of the corpus is relevant "
                               "to a query")
            left = [d for d in eligible if d not in chosen]
            chosen += rng.sample(left, min(len(left), total - len(chosen)))
            chosen += [eligible[rng.randrange(len(eligible))] for _ in range(total - len(chosen))]
    return chosen


def embed_and_rank(data: TrainingData, qids: list[str], texts: list[str], depth: int,
                   progress: bool) -> dict[str, list[str]]:
    """Each query's top ``depth`` document ids from the default bi-encoder, the corpus embedded in memory."""
    from tqdm.auto import tqdm

    from ..encode.transformer import TransformerEmbedder

    embedder = TransformerEmbedder(DEFAULT_MODEL)
    doc_ids = sorted(data.corpus)
    with tqdm(total=len(doc_ids), desc="mining negatives", unit="doc", file=sys.stderr, disable=not progress) as bar:
        docs = embedder.encode([data.corpus[d].embedding_text for d in doc_ids], on_batch=bar.update)
    scores = embedder.encode(texts) @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return {q: [doc_ids[i] for i in row] for q, row in zip(qids, top)}
