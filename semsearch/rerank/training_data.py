"""What a reranker is trained on: documents, queries and judgements (``TrainingData``), read from a BEIR
folder or from a JSONL file of ``{"query", "positive"}`` pairs.

>>> data = read_beir("../shared/datasets/beir/scifact", "train")    # doctest: +SKIP
>>> len(data.queries), len(data.corpus)                             # doctest: +SKIP
(809, 5183)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..corpus.readers import read_corpus, read_jsonl_fields, read_qrels, read_queries
from ..errors import BadInput
from ..types import Document

__all__ = ["TrainingData", "read_beir", "read_pairs", "read_training_data"]


@dataclass(frozen=True)
class TrainingData:
    """Documents, queries and which documents are relevant to which query."""

    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    source: str

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
                            f"{self.source}, {count} queries drawn with seed {seed}")


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
        if not str(query).strip() or not str(positive).strip():
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
