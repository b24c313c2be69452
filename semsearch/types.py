"""The records that flow through the pipeline: documents in, hits out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Document", "Hit", "EvalResult"]


@dataclass(frozen=True)
class Document:
    """One document of a corpus.

    ``metadata`` holds every field of the input record that is not the id,
    title or text; it must be JSON-serialisable.

    >>> Document("d1", "Cats purr when content.", title="Cats").embedding_text
    'Cats Cats purr when content.'
    """

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def embedding_text(self) -> str:
        """The text the bi-encoder reads: title and text joined by a space (the BEIR convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class Hit:
    """One search result. ``rank`` starts at 1.

    ``score`` is the first-stage score (for the bi-encoder: inner product of
    L2-normalised vectors, i.e. cosine). After reranking, ``rerank_score`` is the
    cross-encoder's score (its kind — logit or probability — is in the reranker's
    config) and ``truncated`` tells whether the (query, document) pair was cut to
    the reranker's max length.
    """

    id: str
    score: float
    rank: int
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rerank_score: float | None = None
    truncated: bool = False

    @property
    def embedding_text(self) -> str:
        """Title and text as the models read them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        data = {
            "rank": self.rank,
            "id": self.id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "metadata": dict(self.metadata),
        }
        if self.rerank_score is not None:
            data["rerank_score"] = self.rerank_score
            data["truncated"] = self.truncated
        return data


@dataclass(frozen=True)
class EvalResult:
    """Retrieval quality averaged over ``queries`` queries (BEIR / pytrec_eval conventions)."""

    ndcg_at_10: float
    mrr_at_10: float
    recall_at_100: float
    map_at_100: float
    queries: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "ndcg@10": self.ndcg_at_10,
            "mrr@10": self.mrr_at_10,
            "recall@100": self.recall_at_100,
            "map@100": self.map_at_100,
            "queries": self.queries,
        }
