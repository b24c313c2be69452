"""What a reranker is trained on: documents, queries and judgements (``TrainingData``), read from a BEIR
folder or from a JSONL file of ``{"query", "positive"}`` pairs, or made from a corpus alone
(:func:`inverse_cloze`: a sentence of a document as the query, the rest of it as the positive).

>>> data = read_beir("../shared/datasets/beir/scifact", "train")    # doctest: +SKIP
>>> len(data.queries), len(data.corpus)                             # doctest: +SKIP
(809, 5183)
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..corpus.readers import read_corpus, read_jsonl_fields, read_qrels, read_queries
from ..errors import BadInput
from ..types import Document

__all__ = ["TrainingData", "inverse_cloze", "read_beir", "read_pairs", "read_training_data"]


@dataclass(frozen=True)
class TrainingData:
    """Documents, queries and which documents are relevant to which query."""

    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    source: str
    #: Documents never drawn as a negative for a query (the document a pseudo-query was cut from).
    exclude: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: False for pseudo-queries: judgements made from the corpus, which cannot check a reranker.
    judged: bool = True

    def usable_queries(self) -> list[str]:
        """The queries with at least one relevant document in the corpus, sorted."""
        return sorted(q for q, rel in self.qrels.items() if any(g >= 1 and d in self.corpus for d, g in rel.items()))

    def subset(self, count: int, seed: int = 0) -> "TrainingData":
        """``count`` of the usable queries drawn with ``seed`` (the corpus is kept whole)."""
        usable = self.usable_queries()
        if not 1 <= count <= len(usable):
            raise BadInput(f"a subset needs 1 to {len(usable)} queries, got {count}")
        chosen = sorted(random.Random(seed).sample(usable, count))
        return TrainingData(self.corpus, {q: self.queries[q] for q in chosen}, {q: self.qrels[q] for q in chosen},
                            f"{self.source}, {count} queries drawn with seed {seed}",
                            {q: self.exclude[q] for q in chosen if q in self.exclude}, self.judged)


def read_beir(folder: str | os.PathLike, split: str = "train") -> TrainingData:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"training data folder {str(folder)!r} does not exist")
    corpus = {d.id: d for d in read_corpus(folder / "corpus.jsonl")}
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    queries = read_queries(folder / "queries.jsonl")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise BadInput(f"{len(missing)} judged queries are not in queries.jsonl (first: {missing[0]!r})")
    return TrainingData(corpus, {q: queries[q] for q in qrels}, qrels, f"{folder} ({split})")


def read_pairs(path: str | os.PathLike) -> TrainingData:
    """A JSONL file of ``{"query": …, "positive": …}`` lines; the positives form the corpus."""
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    for number, (query, positive) in read_jsonl_fields(path, ("query", "positive"), "pairs"):
        if not isinstance(query, str) or not isinstance(positive, str):
            raise BadInput(f"{path}:{number}: query and positive must be strings, got {type(query).__name__} and "
                           f"{type(positive).__name__}")
        if not query.strip() or not positive.strip():
            raise BadInput(f"{path}:{number}: empty query or positive")
        doc_id = by_text.setdefault(positive, f"p{len(by_text)}")
        corpus[doc_id] = Document(doc_id, positive)
        qid = qid_of.setdefault(query, f"q{len(qid_of)}")
        queries[qid] = query
        qrels.setdefault(qid, {})[doc_id] = 1
    if len(corpus) < 2:
        raise BadInput(f"{path}: need at least 2 distinct positives to draw negatives from")
    return TrainingData(corpus, queries, qrels, str(path))


def read_training_data(data: TrainingData | str | os.PathLike, split: str = "train") -> TrainingData:
    """``data`` as it is, a BEIR folder (its ``split`` qrels) or a pairs file."""
    if isinstance(data, TrainingData):
        return data
    return read_beir(data, split) if Path(data).is_dir() else read_pairs(data)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def inverse_cloze(documents: Iterable[Document], count: int | None = None, seed: int = 0,
                  min_words: int = 6, max_words: int = 60) -> TrainingData:
    """Pseudo-queries from a corpus alone, by the inverse cloze task: for each of ``count`` documents drawn
    with ``seed`` (default: all), one of its sentences (``min_words`` to ``max_words`` words) is the query
    and the document without that sentence (title kept) is the one positive. The documents themselves are
    the corpus negatives are drawn from, never the one the query was cut from. Deterministic for a seed.

    >>> docs = [Document("a", "Cats purr when content. They also knead blankets with their paws."),
    ...         Document("b", "Bread rises because yeast makes gas. Ovens bake it at high heat.")]
    >>> data = inverse_cloze(docs, seed=0, min_words=3)
    >>> for q in sorted(data.queries):
    ...     print(data.queries[q], "->", data.corpus[next(iter(data.qrels[q]))].text)
    They also knead blankets with their paws. -> Cats purr when content.
    Bread rises because yeast makes gas. -> Ovens bake it at high heat.
    """
    docs = {d.id: d for d in documents}
    rng = random.Random(seed)
    order = sorted(docs)
    rng.shuffle(order)
    corpus: dict[str, Document] = dict(docs)
    queries, qrels, exclude = {}, {}, {}
    for doc_id in order:
        if count is not None and len(queries) >= count:
            break
        sentences = [s for s in _SENTENCE_END.split(docs[doc_id].text.strip()) if s]
        fits = [i for i, s in enumerate(sentences) if min_words <= len(s.split()) <= max_words]
        if len(sentences) < 2 or not fits:
            continue
        cut = rng.choice(fits)
        qid, positive = f"ict-{len(queries)}", f"{doc_id}~ict"
        rest = " ".join(s for i, s in enumerate(sentences) if i != cut)
        corpus[positive] = Document(positive, rest, docs[doc_id].title)
        queries[qid], qrels[qid], exclude[qid] = sentences[cut], {positive: 1}, frozenset({doc_id, positive})
    if not queries:
        raise BadInput(f"no document has {min_words} to {max_words}-word sentences to make pseudo-queries from")
    return TrainingData(corpus, queries, qrels, f"inverse cloze over {len(docs)} documents, seed {seed}", exclude,
                        judged=False)
