"""Request bodies of the HTTP API, as pydantic models: strict types, unknown fields refused, bounds named.

FastAPI validates every body against these and puts them in the OpenAPI schema; the limits are
module constants so the docs, the errors and the tests agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..corpus.readers import invalid_unicode

__all__ = ["SearchRequest", "DocumentIn", "AddRequest", "DeleteRequest", "PredictRequest",
           "MAX_K", "MAX_QUERIES", "MAX_DOCUMENTS", "MAX_TEXTS", "MAX_CANDIDATES", "MAX_QUERY_CHARS"]

MAX_K = 1000          # hits per query
MAX_CANDIDATES = 1000  # first-stage hits a reranker reads
MAX_QUERIES = 64      # queries in one search request
MAX_DOCUMENTS = 1000  # documents in one add or delete request
MAX_TEXTS = 256       # texts in one predict request
MAX_QUERY_CHARS = 4096  # characters in one query: the models read a few hundred tokens of it at most

_STRICT = ConfigDict(extra="forbid", strict=True)


def _text(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must be non-empty text")
    return value


def _unicode(value: Any, what: str) -> None:
    """Refuse text that is not valid Unicode (:func:`~semsearch.corpus.readers.invalid_unicode`)."""
    if invalid_unicode(value):
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate)")


class SearchRequest(BaseModel):
    """``query`` (one) or ``queries`` (several, searched together); the options of ``semsearch query``."""

    model_config = _STRICT

    query: str | None = Field(None, description="One query (give this or queries).")
    queries: list[str] | None = Field(None, max_length=MAX_QUERIES, description="Several queries.")
    k: int = Field(10, ge=1, le=MAX_K, description="Hits per query.")
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        None, description="First stage; default: the index's (hybrid when it has a lexical side).")
    filters: list[str] = Field(default_factory=list, max_length=32,
                               description="Metadata filters as in the CLI: field=value, field>=n, 'field in a,b'.")
    rerank: bool = Field(False, description="Rerank with the index's default reranker.")
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES,
                                   description="First-stage hits the reranker reads (default: as tuned, else 50).")

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of query or queries")
        if self.queries is not None and not self.queries:
            raise ValueError("queries is empty")
        for q in [self.query] if self.query is not None else self.queries:
            _text(q, "a query")
            if len(q) > MAX_QUERY_CHARS:
                raise ValueError(f"a query is at most {MAX_QUERY_CHARS} characters, got {len(q)}")
        _unicode(self.texts, "a query")
        _unicode(self.filters, "a filter")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries)


class DocumentIn(BaseModel):
    """A document as in a JSONL corpus: ``id``, ``text``, optional ``title`` and ``metadata``."""

    model_config = _STRICT

    id: Annotated[str, Field(min_length=1, max_length=512)]
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _non_empty(self) -> "DocumentIn":
        if not self.id.strip():
            raise ValueError("a document id must be non-empty")
        _unicode([self.id, self.text, self.title], "a document's id, text or title")
        _unicode(self.metadata, "a document's metadata")
        _text(self.text, f"the text of document {self.id!r}")
        return self


class AddRequest(BaseModel):
    model_config = _STRICT

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)

    @model_validator(mode="after")
    def _unique(self) -> "AddRequest":
        _unique_ids([d.id for d in self.documents])
        return self


class DeleteRequest(BaseModel):
    model_config = _STRICT

    ids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=MAX_DOCUMENTS)

    @model_validator(mode="after")
    def _unique(self) -> "DeleteRequest":
        _unicode(self.ids, "an id")
        _unique_ids(self.ids)
        return self


class PredictRequest(BaseModel):
    """``texts`` for a SetFit labeller, ``scores`` for a threshold labeller."""

    model_config = _STRICT

    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_TEXTS)
    scores: list[float] | None = Field(None, min_length=1, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_of(self) -> "PredictRequest":
        if (self.texts is None) == (self.scores is None):
            raise ValueError("give exactly one of texts or scores")
        for t in self.texts or []:
            _text(t, "a text")
        _unicode(self.texts, "a text")
        return self


def _unique_ids(ids: list[str]) -> None:
    seen, twice = set(), []
    for i in ids:
        if i in seen:
            twice.append(i)
        seen.add(i)
    if twice:
        raise ValueError(f"duplicate ids in one request: {', '.join(map(repr, sorted(set(twice))[:5]))}")
