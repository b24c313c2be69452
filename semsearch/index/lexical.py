"""Stage 1c — the lexical side of an index: BM25 with the ``bm25s`` package.

Texts are lower-cased, split into words, stripped of English stop words and
stemmed (Snowball English, ``PyStemmer``); BM25 (Lucene variant, k1 = 1.5,
b = 0.75) scores are precomputed by bm25s into a sparse matrix. The index
lives in the ``lexical/`` folder of an index: bm25s's plain files (``.npy``
arrays read with ``allow_pickle=False``, JSON vocabulary and parameters) plus
``ids.npy`` (the documents' int64 ids, in bm25s's order) and ``lexical.json``.

>>> import numpy as np
>>> b = LexicalBuilder()
>>> b.add(["cats purr softly", "dogs bark loudly", "stock markets fell"], np.array([7, 8, 9]))
>>> lex = b.finish()
>>> [int(i) for i in lex.search(["a barking dog"], k=2)[0][0]]
[8]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInput, IndexNotFound, ManifestMismatch

__all__ = ["LexicalIndex", "LexicalBuilder", "DEFAULT_LEXICAL", "LEXICAL_UNITS", "check_lexical_unit"]

log = logging.getLogger(__name__)

_IDS = "ids.npy"
_CONFIG = "lexical.json"
_FORMAT = "semsearch-bm25s/1"
#: How the lexical side is built; recorded in the manifest and in ``lexical/lexical.json``.
DEFAULT_LEXICAL = {"kind": "bm25s", "method": "lucene", "k1": 1.5, "b": 0.75,
                   "stopwords": "en", "stemmer": "english", "unit": "document"}
#: What the BM25 side indexes: whole documents (title + text; ids are document ids) or passages
#: (title + passage; ids are passage ids, a document scored by its best passage).
LEXICAL_UNITS = ("document", "passage")


def check_lexical_unit(unit: str) -> None:
    """Raise :class:`BadInput` unless ``unit`` is one of :data:`LEXICAL_UNITS`."""
    if unit not in LEXICAL_UNITS:
        raise BadInput(f"unknown lexical unit {unit!r}; valid values are: {', '.join(LEXICAL_UNITS)}")


def _import_bm25s():
    try:
        import bm25s
        import Stemmer
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise BadInput(f"the lexical side needs the bm25s and PyStemmer packages ({exc}); "
                       "install them or build with --no-lexical") from None
    logging.getLogger("bm25s").setLevel(logging.NOTSET)  # bm25s pins its logger at DEBUG; follow the app's config
    return bm25s, Stemmer


class _Tokenizer:
    def __init__(self, config: dict):
        bm25s, Stemmer = _import_bm25s()
        self._bm25s = bm25s
        self._stopwords = config["stopwords"]
        self._stemmer = Stemmer.Stemmer(config["stemmer"]) if config.get("stemmer") else None

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return self._bm25s.tokenize(list(texts), stopwords=self._stopwords, stemmer=self._stemmer,
                                    return_ids=False, show_progress=False)


class LexicalIndex:
    """A BM25 index over the documents' ``embedding_text`` (title + text), or over their passages
    (``config["unit"]``), keyed by int64 ids."""

    def __init__(self, retriever, ids: np.ndarray, config: dict, generation: int = 0):
        self.retriever, self.ids, self.config = retriever, np.asarray(ids, dtype=np.int64), dict(config)
        self.generation = generation  # the document store's generation this side was built from
        self._tokenize = _Tokenizer(self.config)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def unit(self) -> str:
        """``"document"`` or ``"passage"``: what one entry is (indexes from before passages: documents)."""
        return self.config.get("unit", "document")

    def search(self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top ``k`` per query as ``(ids, scores)``, best first. Documents with score 0 (no query
        term in common) are left out, so a query of stop words only gets no hits. ``allowed``:
        int64 ids the hits must be among (a filter, applied before ranking)."""
        mask = None
        if allowed is not None:
            mask = np.isin(self.ids, allowed).astype(np.float32)
        out = []
        for tokens in self._tokenize(queries):
            if not tokens:
                out.append((np.empty(0, np.int64), np.empty(0, np.float32)))
                continue
            scores = np.asarray(self.retriever.get_scores(tokens, weight_mask=mask), dtype=np.float32)
            n = min(k, len(scores))
            if n < len(scores):  # everything scoring at least the n-th best, so ties at the cut are all seen
                kth = np.partition(scores, len(scores) - n)[len(scores) - n]
                top = np.flatnonzero(scores >= kth)
            else:
                top = np.arange(len(scores))
            top = top[np.lexsort((top, -scores[top]))][:n]  # by score, ties by position: the same for any k
            top = top[scores[top] > 0]
            out.append((self.ids[top], scores[top]))
        return out

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(folder), allow_pickle=False, show_progress=False)
        np.save(folder / _IDS, self.ids, allow_pickle=False)
        (folder / _CONFIG).write_text(json.dumps({"format": _FORMAT, **self.config, "generation": self.generation},
                                                 indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "LexicalIndex":
        bm25s, _ = _import_bm25s()
        folder = Path(folder)
        if not (folder / _CONFIG).is_file():
            raise IndexNotFound(f"lexical index {folder} is missing ({_CONFIG} not found)")
        try:
            config = json.loads((folder / _CONFIG).read_text(encoding="utf-8"))
            ids = np.load(folder / _IDS, allow_pickle=False)
            retriever = bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise IndexNotFound(f"lexical index {folder} is unreadable: {exc}") from None
        if config.pop("format", None) != _FORMAT:
            raise ManifestMismatch(f"{folder / _CONFIG} is not a semsearch lexical index ({_FORMAT})")
        generation = int(config.pop("generation", 0))
        if retriever.scores["num_docs"] != len(ids):
            raise ManifestMismatch(f"lexical index {folder}: {retriever.scores['num_docs']} documents "
                                   f"but {len(ids)} ids")
        return cls(retriever, ids, config, generation)


_NO_WORD = "\x00"  # never produced by the tokenizer


class LexicalBuilder:
    """Collects tokenised documents chunk by chunk; :meth:`finish` builds the BM25 matrix."""

    def __init__(self, config: dict | None = None):
        self.config = dict(DEFAULT_LEXICAL if config is None else config)
        self._tokenize = _Tokenizer(self.config)
        self._tokens: list[list[str]] = []
        self._ids: list[np.ndarray] = []

    def add(self, texts: Sequence[str], ids: np.ndarray) -> None:
        self._tokens.extend(self._tokenize(texts))
        self._ids.append(np.asarray(ids, dtype=np.int64))

    def finish(self, allow_empty: bool = False) -> LexicalIndex:
        """The BM25 index. A corpus with no indexable word is refused unless ``allow_empty`` (an index whose
        remaining documents are all stop words after a delete): then they get a token no query produces."""
        bm25s, _ = _import_bm25s()
        if allow_empty and self._tokens and not any(self._tokens):
            self._tokens[0] = [_NO_WORD]
        if not any(self._tokens):
            raise BadInput("no document has a word the BM25 side can index (only stop words, numbers of one "
                           "digit or single letters); build without it (--no-lexical)")
        c = self.config
        retriever = bm25s.BM25(method=c["method"], k1=c["k1"], b=c["b"])
        retriever.index(self._tokens, show_progress=False)
        ids = np.concatenate(self._ids) if self._ids else np.empty(0, np.int64)
        self._tokens = []
        return LexicalIndex(retriever, ids, c)
