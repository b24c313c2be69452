"""Passages: long documents are split into windows of the embedder's own tokens, each embedded alone.

A document is the unit of results, a passage the unit of retrieval. :class:`PassageSplitter` cuts a
document's text into passages that fit the bi-encoder (title included), at paragraph or sentence
boundaries where it can (Markdown headings too, for ``.md`` files), with some overlap. The cutting is
done by `semantic-text-splitter <https://github.com/benbrandt/text-splitter>`_, which counts tokens
with the model's ``tokenizer.json`` and reports character offsets.

Passage ids: a passage's id in the vector index is ``(document int id << id_bits) | j`` for its
``j``-th passage, so a document is ``passage id >> id_bits`` without a lookup. Indexes built before
passages existed have ``id_bits`` 0: one passage per document, with the document's id.

>>> from semsearch.index.passages import PassageSplitter, document_ids
>>> splitter = PassageSplitter(embedder, mode="auto", tokens=128)       # doctest: +SKIP
>>> [(s.start, s.end) for s in splitter.split(doc)]                     # doctest: +SKIP
[(0, 512), (470, 1020)]
>>> document_ids(np.array([5 << 16 | 3]), 16)
array([5])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..corpus.extract import page_of as pdf_page_of
from ..errors import BadInput
from ..types import Document

if TYPE_CHECKING:
    from ..encode.embedder import Embedder

__all__ = ["PassageSplitter", "Span", "check_passage_options", "PASSAGE_MODES", "ID_BITS", "DEFAULT_OVERLAP",
           "document_ids", "passage_text", "page_of", "query_terms"]

#: ``auto``: split documents longer than the passage budget; ``off``: one passage per document (cut to fit).
PASSAGE_MODES = ("auto", "off")
#: Bits of a passage id that number the passages of one document (at most 65,536 passages each).
ID_BITS = 16
#: Tokens two neighbouring passages share, by default (at most a quarter of the passage).
DEFAULT_OVERLAP = 32
_MIN_BUDGET = 16  # a title so long that fewer tokens are left for the text still gets this many
_MARKDOWN = (".md", ".markdown")


@dataclass(frozen=True)
class Span:
    """One passage of a document: characters ``start:end`` of its text, and its page (PDFs; else ``None``)."""

    start: int
    end: int
    page: int | None = None


def check_passage_options(mode: str, tokens: int | None = None) -> None:
    """Raise :class:`BadInput` for a passages mode or token budget no model could take (checked before one loads)."""
    if mode not in PASSAGE_MODES:
        raise BadInput(f"unknown passages mode {mode!r}; valid values are: {', '.join(PASSAGE_MODES)}")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < _MIN_BUDGET):
        raise BadInput(f"passage tokens must be an integer of at least {_MIN_BUDGET}, got {tokens!r}")


class PassageSplitter:
    """Cuts documents into passages the embedder reads whole.

    ``tokens`` is the most tokens a passage's embedding text (title, passage and the model's special
    tokens) may have; default and ceiling: the embedder's max length. ``overlap`` tokens are shared
    by neighbours (``0 <= overlap <= tokens // 2``; default 32, or a quarter of ``tokens`` if that is less;
    a long title leaves less room for the text, and the overlap is then cut to half of what is left). With
    ``mode="auto"`` a document that fits in ``tokens`` stays one passage; ``"off"`` never splits (the model
    reads the start of a long document).
    """

    def __init__(self, embedder: "Embedder", *, mode: str = "auto", tokens: int | None = None,
                 overlap: int | None = None, id_bits: int | None = None):
        check_passage_options(mode, tokens)
        limit = getattr(embedder, "max_length", None)
        if tokens is not None and limit and tokens > limit:
            raise BadInput(f"passage tokens {tokens} is more than the embedder reads ({limit} tokens)")
        self.tokens = int(tokens or limit or 256)
        overlap = min(DEFAULT_OVERLAP, self.tokens // 4) if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= self.tokens // 2:
            raise BadInput(f"passage overlap must be an integer from 0 to {self.tokens // 2} (half the passage "
                           f"tokens), got {overlap!r}")
        if id_bits is None:  # off: document ids are the vector ids, as before passages (older readers can read it)
            id_bits = ID_BITS if mode == "auto" else 0
        if mode == "auto" and id_bits == 0:
            mode = "off"  # an index from before passages: one passage per document, whatever is asked
        self.mode, self.overlap, self.id_bits = mode, int(overlap), int(id_bits)
        self._counter = _TokenCounter(embedder)
        self._splitters: dict[tuple[bool, int, int], Any] = {}

    def config(self) -> dict[str, Any]:
        """What the manifest records about passages."""
        return {"mode": self.mode, "tokens": self.tokens, "overlap": self.overlap, "id_bits": self.id_bits,
                "splitter": f"semantic-text-splitter {_splitter_version()}", "counted_in": self._counter.unit}

    @classmethod
    def from_config(cls, embedder: "Embedder", config: dict[str, Any] | None) -> "PassageSplitter":
        """The splitter an index was built with (``None``: an index from before passages)."""
        if not config:
            return cls(embedder, mode="off", id_bits=0)
        tokens = int(config["tokens"])
        # an index from before overlaps were limited to half the window: it split with at most that anyway
        return cls(embedder, mode=config["mode"], tokens=tokens, overlap=min(int(config["overlap"]), tokens // 2),
                   id_bits=int(config["id_bits"]))

    def split(self, doc: Document) -> list[Span]:
        """The passages of one document, in order (at least one, even for an empty text)."""
        return self.split_many([doc])[0]

    def split_many(self, docs: Sequence[Document]) -> list[list[Span]]:
        """The passages of each document. Documents are token-counted together, and those to cut are cut
        together (in parallel, by the splitter's own threads), grouped by their token budget."""
        out = [[Span(0, len(d.text), page_of(d, 0))] for d in docs]
        if self.mode == "off":
            return out
        counts = self._counter.count([d.embedding_text for d in docs])
        long = [i for i, count in enumerate(counts) if count > self.tokens]
        titles = self._counter.count([docs[i].title for i in long]) if long else []
        groups: dict[tuple[bool, int, int], list[int]] = {}
        for i, title in zip(long, titles):
            doc = docs[i]
            title = title - self._counter.specials if doc.title else 0
            budget = max(_MIN_BUDGET, self.tokens - self._counter.specials - title - (1 if doc.title else 0))
            markdown = str(doc.metadata.get("path", "")).lower().endswith(_MARKDOWN)
            groups.setdefault((markdown, budget, min(self.overlap, budget // 2)), []).append(i)
        for key, members in groups.items():
            chunks = self._splitter(*key).chunk_all_indices([docs[i].text for i in members])
            for i, found in zip(members, chunks):
                doc = docs[i]
                spans = [Span(start, start + len(chunk), page_of(doc, start)) for start, chunk in found]
                if len(spans) > 1 << self.id_bits:
                    raise BadInput(f"document {doc.id!r} splits into {len(spans)} passages, more than an index holds "
                                   f"per document ({1 << self.id_bits}); split it into several documents or use "
                                   "longer passages")
                out[i] = spans or out[i]
        return out

    def rows(self, docs: Sequence[Document], doc_int_ids: Sequence[int]) -> tuple[list[tuple], list[str]]:
        """The passages of ``docs`` as store rows ``(passage id, document int id, start, end, page)`` and the
        text the bi-encoder reads for each (title and passage), in order. Build, Ray build and updates
        all go through here, so they make the same passages with the same ids."""
        rows, texts = [], []
        for doc, spans, doc_id in zip(docs, self.split_many(docs), doc_int_ids):
            base = int(doc_id) << self.id_bits
            for j, span in enumerate(spans):
                rows.append((base + j, int(doc_id), span.start, span.end, span.page))
                texts.append(passage_text(doc.title, doc.text, span))
        return rows, texts

    def _splitter(self, markdown: bool, budget: int, overlap: int):
        key = (markdown, budget, overlap)
        if key not in self._splitters:
            self._splitters[key] = self._counter.splitter(markdown, budget, overlap)
        return self._splitters[key]


class _TokenCounter:
    """Counts tokens with the embedder's tokenizer (``tokenizer.json``), or words for embedders without one."""

    def __init__(self, embedder: "Embedder"):
        self._json = embedder.tokenizer_json()
        self._tokenizer = None
        if self._json is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self._json)
            self._tokenizer.no_truncation()
            self._tokenizer.no_padding()
        self.unit = "tokens" if self._tokenizer is not None else "words"
        self.specials = self.count([""])[0] if self._tokenizer is not None else 0

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text, the model's special tokens included."""
        if self._tokenizer is None:
            return [len(t.split()) for t in texts]
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def splitter(self, markdown: bool, budget: int, overlap: int):
        try:
            from semantic_text_splitter import MarkdownSplitter, TextSplitter
        except ImportError:  # pragma: no cover - a core dependency
            raise BadInput("splitting long documents needs semantic-text-splitter: pip install "
                           "semantic-text-splitter (or index with --passages off)") from None
        kind = MarkdownSplitter if markdown else TextSplitter
        if self._tokenizer is not None:
            return kind.from_huggingface_tokenizer(self._tokenizer, budget, overlap=overlap)
        return kind.from_callback(lambda text: len(text.split()), budget, overlap=overlap)


def document_ids(ids: np.ndarray, id_bits: int) -> np.ndarray:
    """The document int id of each passage id."""
    return np.asarray(ids, dtype=np.int64) >> np.int64(id_bits)


def passage_text(title: str, text: str, span: Span) -> str:
    """What the bi-encoder reads for one passage: the document's title, a space, the passage."""
    body = text[span.start:span.end]
    return f"{title} {body}".strip() if title else body


def page_of(doc: Document, offset: int) -> int | None:
    """The page (from 1) holding character ``offset``, for documents whose reader recorded ``page_starts``."""
    starts = doc.metadata.get("page_starts") if hasattr(doc.metadata, "get") else None
    return pdf_page_of(offset, starts) if starts else None


def query_terms(query: str) -> set[str]:
    """Lower-case words of a query (for picking a passage without vectors, and for highlighting)."""
    return {w for w in re.findall(r"\w+", query.lower()) if len(w) > 1}


def _splitter_version() -> str:
    try:
        return version("semantic-text-splitter")
    except PackageNotFoundError:  # pragma: no cover
        return "?"
