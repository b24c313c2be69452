"""The document store: one SQLite file holding each document's id, title, text and metadata.

Rows are keyed by the int64 id the vector index uses; the user's string id is
unique. Metadata is stored as JSON text.

>>> store = DocStore(":memory:", create=True)
>>> store.add([Document("a", "text a")], [0])
>>> store.get([0])[0].id
'a'
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from .errors import BadInput, IndexNotFound
from .types import Document

if TYPE_CHECKING:
    from .filters import Filter

__all__ = ["DocStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    int_id   INTEGER PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    title    TEXT NOT NULL,
    text     TEXT NOT NULL,
    metadata TEXT NOT NULL
)
"""
_MAX_VARS = 900  # stay under SQLite's limit on bound parameters


class DocStore:
    """SQLite-backed documents. ``create=True`` makes a new file; otherwise it must exist and opens read-only."""

    def __init__(self, path: str | Path, *, create: bool = False):
        self.path = str(path)
        if create:
            self._conn = sqlite3.connect(self.path)
            self._conn.execute(_SCHEMA)
        else:
            if not Path(self.path).is_file():
                raise IndexNotFound(f"document store {self.path} is missing")
            self._conn = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode=ro", uri=True)
        from .filters import as_number

        self._conn.create_function("semsearch_number", 1, as_number, deterministic=True)

    def add(self, docs: Sequence[Document], int_ids: Sequence[int]) -> None:
        """Insert documents; :class:`BadInput` names the first duplicate id."""
        rows = []
        for doc, int_id in zip(docs, int_ids):
            try:
                metadata = json.dumps(dict(doc.metadata), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise BadInput(f"document {doc.id!r}: metadata is not JSON-serialisable ({exc})") from None
            rows.append((int(int_id), doc.id, doc.title, doc.text, metadata))
        try:
            with self._conn:
                self._conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError:
            raise BadInput(f"duplicate document id {self._first_duplicate([d.id for d in docs])!r}") from None

    def _first_duplicate(self, ids: list[str]) -> str:
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        if repeated:
            return repeated[0]
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            row = self._conn.execute(f"SELECT id FROM docs WHERE id IN ({marks}) LIMIT 1", chunk).fetchone()
            if row:
                return row[0]
        return "?"

    def get(self, int_ids: Iterable[int]) -> list[Document | None]:
        """Documents for ``int_ids``, in the same order (``None`` where an id is unknown)."""
        wanted = [int(i) for i in int_ids]
        found: dict[int, Document] = {}
        for chunk in _chunks(sorted(set(wanted))):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT int_id, id, title, text, metadata FROM docs WHERE int_id IN ({marks})"
            for int_id, doc_id, title, text, metadata in self._conn.execute(sql, chunk):
                found[int_id] = Document(doc_id, text, title, json.loads(metadata))
        return [found.get(i) for i in wanted]

    def string_ids(self, int_ids: Iterable[int]) -> list[str | None]:
        """The user's ids for ``int_ids``, in the same order (``None`` where unknown)."""
        wanted = [int(i) for i in int_ids]
        found: dict[int, str] = {}
        for chunk in _chunks(sorted(set(wanted))):
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT int_id, id FROM docs WHERE int_id IN ({marks})", chunk))
        return [found.get(i) for i in wanted]

    def select(self, filters: Sequence["Filter"]) -> np.ndarray:
        """Int ids of the documents whose metadata satisfies every filter (sorted).

        :class:`BadInput` if a filter names a field no document has (most likely a typo)."""
        conds, params = [], []
        for f in filters:
            if self._conn.execute("SELECT 1 FROM docs WHERE json_type(metadata, ?) IS NOT NULL LIMIT 1",
                                  (f.path,)).fetchone() is None:
                raise BadInput(f"no document has a metadata field {f.field!r}; cannot filter on it")
            sql, args = f.sql()
            conds.append(sql)
            params += args
        where = " AND ".join(conds) or "1"
        rows = self._conn.execute(f"SELECT int_id FROM docs WHERE {where} ORDER BY int_id", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_documents(self, batch_size: int = 1000) -> Iterator[Document]:
        """Every document, in int-id order, read in batches."""
        last = -1
        while True:
            rows = self._conn.execute(
                "SELECT int_id, id, title, text, metadata FROM docs WHERE int_id > ? ORDER BY int_id LIMIT ?",
                (last, batch_size),
            ).fetchall()
            if not rows:
                return
            for _, doc_id, title, text, metadata in rows:
                yield Document(doc_id, text, title, json.loads(metadata))
            last = rows[-1][0]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "DocStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(items: list, size: int = _MAX_VARS):
    for start in range(0, len(items), size):
        yield items[start : start + size]
