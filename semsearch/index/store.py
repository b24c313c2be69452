"""The document store: one SQLite file holding each document's id, title, text and metadata, and its passages.

Documents are keyed by an int64 id; the user's string id is unique. Metadata is stored as JSON
text. Each document has one or more passages (``passages``: character offsets into its text, page,
vector); a passage's int id is the id the vector index uses (see :mod:`semsearch.index.passages`).

>>> store = DocStore(":memory:", create=True)
>>> store.add([Document("a", "text a")], [0])
>>> store.get([0])[0].id
'a'
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from ..errors import BadInput, IndexNotFound
from ..types import Document
from .passages import Span, passage_text

if TYPE_CHECKING:
    from .filters import Filter

__all__ = ["DocStore", "PassageRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    int_id     INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    vector_key TEXT,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (int_id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS docs_generation ON docs (generation);
"""
_PASSAGES = """
CREATE TABLE IF NOT EXISTS passages (
    int_id     INTEGER PRIMARY KEY,
    doc_int_id INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char   INTEGER NOT NULL,
    page       INTEGER,
    vector_key TEXT,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS passages_doc ON passages (doc_int_id);
CREATE INDEX IF NOT EXISTS passages_generation ON passages (generation);
"""
# A store from before passages: each document is its own passage, with the document's int id.
_ONE_PASSAGE_EACH = ("SELECT int_id, int_id AS doc_int_id, 0 AS start_char, length(text) AS end_char, NULL AS page, "
                     "{key} AS vector_key, {generation} AS generation FROM docs")
#: ``(passage int id, document int id, start, end, page, vector key)``: one row of ``passages``.
PassageRow = tuple[int, int, int, int, "int | None", str]
_MAX_VARS = 900  # stay under SQLite's limit on bound parameters


class DocStore:
    """SQLite-backed documents. ``create=True`` makes a new file; otherwise it must exist and opens
    read-only, or for writing with ``writable=True``.

    Besides the documents it keeps what lets an index change without a rebuild: each document's
    vector (in ``vectors``, keyed by the embedding cache key, so unchanged text is never re-embedded),
    a generation counter bumped by every committed write, the generation each row was last written
    in, and tombstones of deleted rows.
    """

    def __init__(self, path: str | Path, *, create: bool = False, writable: bool = False, id_bits: int = 0):
        self.path = str(path)
        if create:
            self._conn = sqlite3.connect(self.path, timeout=30)
            self._conn.executescript(_SCHEMA + _PASSAGES)
            with self._conn:
                self._set_meta("passage_id_bits", int(id_bits))
        else:
            if not Path(self.path).is_file():
                raise IndexNotFound(f"document store {self.path} is missing")
            try:
                self._conn = self._connect("rw" if writable else "ro")
            except sqlite3.OperationalError as exc:
                if writable or "readonly" not in str(exc):
                    raise IndexNotFound(f"document store {self.path} is unreadable: {exc}") from None
                # A writer was killed mid-transaction: SQLite rolls its journal back on the first
                # read, which needs write access once.
                if not os.access(Path(self.path).parent, os.W_OK):
                    raise IndexNotFound(f"document store {self.path} has an unfinished transaction (a writer "
                                        "was interrupted) and its folder is read-only; open it once with write "
                                        "access to roll it back") from None
                self._connect("rw").close()
                self._conn = self._connect("ro")
            except sqlite3.DatabaseError as exc:
                raise IndexNotFound(f"document store {self.path} is unreadable: {exc}") from None
            self._passages_table(writable)
        from .filters import as_number

        self._conn.create_function("semsearch_number", 1, as_number, deterministic=True)
        self.id_bits = int(self._meta("passage_id_bits") or 0)

    def _passages_table(self, writable: bool) -> None:
        """Give a store from before passages its one passage per document: a table when opened for
        writing (older readers keep working: they read ``docs``), a temporary view when read-only."""
        if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'passages'").fetchone():
            return
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(docs)")}
        select = _ONE_PASSAGE_EACH.format(key="vector_key" if "vector_key" in columns else "NULL",
                                          generation="generation" if "generation" in columns else "0")
        if writable and "vector_key" in columns:
            with self._conn:
                self._conn.executescript("BEGIN;" + _PASSAGES + f"INSERT INTO passages {select}; COMMIT;")
        else:
            self._conn.execute(f"CREATE TEMP VIEW passages AS {select}")

    def _connect(self, mode: str) -> sqlite3.Connection:
        # check_same_thread=False: a server opens a store in one thread and searches it in another; a store
        # is still used by one thread at a time (SQLite is built serialized, so this only lifts Python's check)
        conn = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode={mode}", uri=True, timeout=30,
                               check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM docs").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def add(self, docs: Sequence[Document], int_ids: Sequence[int], passages: Sequence[PassageRow] | None = None,
            vectors: np.ndarray | None = None, generation: int = 0) -> None:
        """Insert documents, their ``passages`` (default: one whole-text passage each, no vector) and the
        passages' ``vectors`` (one row each, in the same order) in one transaction; :class:`BadInput`
        names the first duplicate id."""
        if passages is None:
            passages = [(int(i) << self.id_bits, int(i), 0, len(d.text), None, None) for d, i in zip(docs, int_ids)]
        first_key = {}
        for row in passages:
            first_key.setdefault(row[1], row[5])
        rows = [(int(i), d.id, d.title, d.text, metadata_json(d), first_key.get(int(i)), generation)
                for d, i in zip(docs, int_ids)]
        try:
            with self._conn:
                if vectors is not None:
                    self._put_vectors([row[5] for row in passages], vectors)
                self._conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._insert_passages(passages, generation)
                if generation:
                    self._set_meta("generation", generation)
        except sqlite3.IntegrityError:
            raise BadInput(f"duplicate document id {self._first_duplicate([d.id for d in docs])!r}") from None

    def _insert_passages(self, passages: Sequence[PassageRow], generation: int) -> None:
        self._conn.executemany("INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(int(p), int(d), int(a), int(b), page, key, generation)
                                for p, d, a, b, page, key in passages])

    # --- what incremental updates need --------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator["DocStore"]:
        """Reads inside see one committed state (a writer's commit waits until the block ends)."""
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("ROLLBACK")

    @property
    def generation(self) -> int:
        """Bumped by every committed write; 0 for a store that predates generations."""
        return int(self._meta("generation") or 0)

    @property
    def has_vectors(self) -> bool:
        """Whether every passage's vector is stored (indexes built before semsearch 0.2 have none)."""
        return self._conn.execute("SELECT 1 FROM passages WHERE vector_key IS NULL LIMIT 1").fetchone() is None

    def next_int_id(self) -> int:
        """A document int id never used before in this store (deleted ones are not reused, even after a prune)."""
        row = self._conn.execute(
            "SELECT MAX(m) FROM (SELECT MAX(int_id) AS m FROM docs UNION ALL "
            "SELECT MAX(int_id) >> ? FROM tombstones)", (self.id_bits,)
        ).fetchone()
        used = -1 if row[0] is None else int(row[0])
        return max(used, int(self._meta("max_int_id") or -1)) + 1

    @property
    def pruned_through(self) -> int:
        """Tombstones up to this generation were dropped by :meth:`prune`; catching up from an older
        generation needs a rebuild."""
        return int(self._meta("pruned_through") or 0)

    def lookup(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str, str, str | None]]:
        """``{id: (int_id, title, text, metadata JSON, vector key)}`` for the ids that exist."""
        found = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, int_id, title, text, metadata, vector_key FROM docs WHERE id IN ({marks})"
            for doc_id, *rest in self._conn.execute(sql, chunk):
                found[doc_id] = tuple(rest)
        return found

    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors for those of ``keys`` that have one."""
        found = {}
        for chunk in _chunks(sorted(set(keys))):
            marks = ",".join("?" * len(chunk))
            for key, blob in self._conn.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def upsert(self, new: Sequence[tuple[int, Document, Sequence[PassageRow]]],
               updated: Sequence[tuple[int, Document, Sequence[PassageRow]]], vectors: dict[str, np.ndarray]) -> int:
        """One transaction: store ``vectors`` (by key), insert ``new`` documents and replace ``updated``
        ones (``(int_id, document, its passages)``): an updated document's passages are all replaced,
        and those of its old passage ids it no longer has get tombstones. Bumps the generation; returns it."""
        with self._conn:
            generation = self.generation + 1
            self._put_vectors(list(vectors), np.array(list(vectors.values()), dtype=np.float32))
            self._conn.executemany(
                "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(i, d.id, d.title, d.text, metadata_json(d), rows[0][5], generation) for i, d, rows in new])
            self._conn.executemany(
                "UPDATE docs SET title = ?, text = ?, metadata = ?, vector_key = ?, generation = ? WHERE int_id = ?",
                [(d.title, d.text, metadata_json(d), rows[0][5], generation, i) for i, d, rows in updated])
            if updated:
                kept = {int(row[0]) for _, _, rows in updated for row in rows}
                old = self.passage_ids([i for i, _, _ in updated])
                self._conn.executemany("INSERT OR REPLACE INTO tombstones VALUES (?, ?)",
                                       [(p, generation) for p in old if p not in kept])
                self._delete_passages([i for i, _, _ in updated])
            self._insert_passages([row for _, _, rows in list(new) + list(updated) for row in rows], generation)
            self._set_meta("generation", generation)
        return generation

    def delete(self, int_ids: Sequence[int]) -> int:
        """One transaction: remove documents and all their passages, leave tombstones (of the passage ids),
        bump the generation; returns it."""
        with self._conn:
            generation = self.generation + 1
            gone = self.passage_ids(int_ids)
            self._delete_passages(int_ids)
            for chunk in _chunks([int(i) for i in int_ids]):
                marks = ",".join("?" * len(chunk))
                self._conn.execute(f"DELETE FROM docs WHERE int_id IN ({marks})", chunk)
            self._conn.executemany("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", [(p, generation) for p in gone])
            self._set_meta("generation", generation)
        return generation

    def passage_ids(self, doc_int_ids: Sequence[int]) -> list[int]:
        """The passage ids of those documents."""
        found = []
        for chunk in _chunks([int(i) for i in doc_int_ids]):
            marks = ",".join("?" * len(chunk))
            found += [r[0] for r in self._conn.execute(
                f"SELECT int_id FROM passages WHERE doc_int_id IN ({marks})", chunk)]
        return found

    def _delete_passages(self, doc_int_ids: Sequence[int]) -> None:
        for chunk in _chunks([int(i) for i in doc_int_ids]):
            marks = ",".join("?" * len(chunk))
            self._conn.execute(f"DELETE FROM passages WHERE doc_int_id IN ({marks})", chunk)

    def changes_since(self, generation: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(passage ids written, their vectors, passage ids deleted)`` after ``generation``."""
        rows = self._conn.execute(
            "SELECT p.int_id, v.vector FROM passages p JOIN vectors v ON v.key = p.vector_key "
            "WHERE p.generation > ? ORDER BY p.int_id", (generation,)).fetchall()
        gone = self._conn.execute("SELECT int_id FROM tombstones WHERE generation > ? ORDER BY int_id",
                                  (generation,)).fetchall()
        return _ids_and_vectors(rows) + (np.array([r[0] for r in gone], dtype=np.int64),)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(passage ids, vectors)`` of every passage, in id order."""
        rows = self._conn.execute("SELECT p.int_id, v.vector FROM passages p JOIN vectors v ON v.key = p.vector_key "
                                  "ORDER BY p.int_id").fetchall()
        return _ids_and_vectors(rows)

    def passage_count(self) -> int:
        """Passages stored (as many as the vector index holds)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def texts(self, unit: str = "document") -> tuple[np.ndarray, list[str]]:
        """``(int ids, embedding texts)`` for the BM25 side, in id order: of every document (``unit``
        ``"document"``, document ids) or of every passage (``"passage"``: title and passage, passage ids)."""
        if unit == "document":
            rows = self._conn.execute("SELECT int_id, title, text FROM docs ORDER BY int_id").fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            return ids, [Document("_", text, title).embedding_text for _, title, text in rows]
        rows = self._conn.execute(
            "SELECT p.int_id, d.title, d.text, p.start_char, p.end_char FROM passages p "
            "JOIN docs d ON d.int_id = p.doc_int_id ORDER BY p.int_id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, [passage_text(title, text, Span(a, b)) for _, title, text, a, b in rows]

    def passages(self, doc_int_ids: Iterable[int], with_vectors: bool = False) -> dict[int, list[tuple]]:
        """``{document int id: [(passage id, start, end, page[, vector]), …]}`` in passage order (the vector
        is ``None`` for a passage stored without one)."""
        found: dict[int, list[tuple]] = {}
        join = "LEFT JOIN vectors v ON v.key = p.vector_key" if with_vectors else ""
        vector = ", v.vector" if with_vectors else ""
        for chunk in _chunks(sorted({int(i) for i in doc_int_ids})):
            marks = ",".join("?" * len(chunk))
            for doc, *row in self._conn.execute(
                    f"SELECT p.doc_int_id, p.int_id, p.start_char, p.end_char, p.page{vector} FROM passages p {join} "
                    f"WHERE p.doc_int_id IN ({marks}) ORDER BY p.int_id", chunk):
                if with_vectors and row[-1] is not None:
                    row[-1] = np.frombuffer(row[-1], dtype=np.float32)
                found.setdefault(doc, []).append(tuple(row))
        return found

    def prune(self) -> int:
        """Drop vectors no passage uses and all tombstones, then VACUUM; returns vectors dropped."""
        with self._conn:
            self._set_meta("max_int_id", self.next_int_id() - 1)
            self._set_meta("pruned_through", self.generation)
            dropped = self._conn.execute(
                "DELETE FROM vectors WHERE key NOT IN (SELECT vector_key FROM passages WHERE vector_key IS NOT NULL)"
            ).rowcount
            self._conn.execute("DELETE FROM tombstones")
        self._conn.execute("VACUUM")
        return int(dropped)

    def _put_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors)]
        self._conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", rows)

    def _meta(self, key: str) -> str | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store from before the meta table
                return None
            raise
        return row[0] if row else None

    def _set_meta(self, key: str, value) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

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

    def select(self, filters: Sequence["Filter"], passages: bool = False) -> np.ndarray:
        """Int ids of the documents whose metadata satisfies every filter (sorted); with ``passages``,
        the ids of those documents' passages.

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
        sql = f"SELECT int_id FROM docs WHERE {where} ORDER BY int_id"
        if passages:
            sql = f"SELECT int_id FROM passages WHERE doc_int_id IN (SELECT int_id FROM docs WHERE {where}) ORDER BY int_id"
        rows = self._conn.execute(sql, params).fetchall()
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


def metadata_json(doc: Document) -> str:
    """The stored form of a document's metadata (JSON text)."""
    try:
        return json.dumps(dict(doc.metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"document {doc.id!r}: metadata is not JSON-serialisable ({exc})") from None


def _ids_and_vectors(rows) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.empty((0, 0), dtype=np.float32)
    return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])


def _chunks(items: list, size: int = _MAX_VARS):
    for start in range(0, len(items), size):
        yield items[start : start + size]
