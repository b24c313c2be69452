"""The records that flow through the pipeline: documents in, hits out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Document", "Passage", "Hit", "EvalResult"]


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
class Passage:
    """Where a passage lies in its document: characters ``start:end`` of the text, its page (PDFs) and,
    in a hit, how well it matched the query (cosine with the query; word overlap for lexical search)."""

    start: int
    end: int
    page: int | None = None
    score: float | None = None


@dataclass(frozen=True)
class Hit:
    """One search result: a document. ``rank`` starts at 1.

    ``score`` is the first-stage score (for the bi-encoder: inner product of
    L2-normalised vectors, i.e. cosine, of the document's best passage). ``passages``
    are the document's best-matching passages, best first; ``passage``, ``start``,
    ``end`` and ``page`` describe the best one (the whole text for a document of one
    passage). After reranking, ``rerank_score`` is the cross-encoder's score (its kind —
    logit or probability — is in the reranker's config) and ``truncated`` tells whether
    the (query, passage) pair was cut to the reranker's max length.

    >>> hit = Hit("d1", 0.8, 1, "First part. Second part.", passages=(Passage(12, 24),))
    >>> hit.passage, hit.start
    ('Second part.', 12)
    """

    id: str
    score: float
    rank: int
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rerank_score: float | None = None
    truncated: bool = False
    passages: tuple[Passage, ...] = ()

    @property
    def embedding_text(self) -> str:
        """Title and text as the bi-encoder reads a whole document."""
        return f"{self.title} {self.text}".strip() if self.title else self.text

    @property
    def start(self) -> int:
        """Where the best passage starts in ``text`` (characters)."""
        return self.passages[0].start if self.passages else 0

    @property
    def end(self) -> int:
        """Where the best passage ends in ``text`` (characters, exclusive)."""
        return self.passages[0].end if self.passages else len(self.text)

    @property
    def page(self) -> int | None:
        """The best passage's page, for documents read from PDFs."""
        return self.passages[0].page if self.passages else None

    @property
    def passage(self) -> str:
        """The text of the best-matching passage."""
        return self.text[self.start:self.end]

    def passage_texts(self, count: int = 1) -> list[str]:
        """Title and each of the ``count`` best passages, as the reranker reads them."""
        spans = self.passages[:count] or (Passage(0, len(self.text)),)
        return [f"{self.title} {self.text[p.start:p.end]}".strip() if self.title else self.text[p.start:p.end]
                for p in spans]

    def to_dict(self) -> dict[str, Any]:
        """The hit as JSON-able data (what ``semsearch query --json`` and the server print)."""
        data = {
            "rank": self.rank,
            "id": self.id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "metadata": dict(self.metadata),
            "passage": self.passage,
            "start": self.start,
            "end": self.end,
        }
        if self.page is not None:
            data["page"] = self.page
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
        """The metrics keyed as printed: ``ndcg@10``, ``mrr@10``, ``recall@100``, ``map@100``, ``queries``."""
        return {
            "ndcg@10": self.ndcg_at_10,
            "mrr@10": self.mrr_at_10,
            "recall@100": self.recall_at_100,
            "map@100": self.map_at_100,
            "queries": self.queries,
        }
