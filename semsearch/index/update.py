"""Changing an index in place: add (insert or update), delete, compact. One writer at a time; crash-safe.

The SQLite document store is the source of truth. It holds every document's vector, keyed by an
embedding-cache key, so unchanged text is never embedded twice. The FAISS file, the BM25 side and
the manifest are derived from it. A write goes:

1. Take ``.<name>.lock`` beside the index folder (``flock``, also taken by builds; the OS releases it when the process dies, so a killed
   writer leaves no stale lock). A second writer gets :class:`~semsearch.errors.IndexLocked`.
2. Store the documents batch by batch. Each batch is one SQLite transaction holding its vectors, and
   it bumps the store's generation. A committed batch is acknowledged (``on_commit``), and from then
   on it survives a ``kill -9``.
3. Bring the derived files up to that generation. ``vectors.faiss`` is replaced atomically (temporary
   file, fsync, rename) and the BM25 side is rebuilt and swapped in. ``manifest.json`` is written
   last; its ``generation`` says which store generation the files reflect.

A reader that opens an index whose store is ahead of its manifest (a writer died between 2 and 3, or
is in 3 now) applies the missing changes in memory (:func:`catch_up`). Every acknowledged document is
then searchable, and a deleted one never is.

FAISS and deletion: Flat and IVF remove ids in place (``remove_ids``). HNSW cannot remove, so a
write that updates or deletes documents of an HNSW index rebuilds it from the stored vectors. Adding
new documents only appends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..corpus.readers import size_hint
from ..errors import BadInput
from ..files import fsync_folder
from ..types import Document
from .layout import (
    DOCS_FILE,
    LEXICAL_DIR,
    VECTORS_FILE,
    folder_size,
    remove_temporaries,
    storage_errors,
    writer_lock,
)
from .lexical import LexicalBuilder, LexicalIndex
from .store import DocStore, metadata_json
from .vectors import IndexBuilder, VectorIndex

if TYPE_CHECKING:
    from .engine import SearchEngine

__all__ = ["AddReport", "DeleteReport", "CompactReport", "add_documents", "delete_documents", "compact",
           "catch_up", "read_changes", "apply_changes", "update_manifest", "rebuild_lexical", "lexical_from_texts"]

log = logging.getLogger(__name__)

_BATCH = 256  # documents per committed batch


@dataclass(frozen=True)
class AddReport:
    """What :func:`add_documents` did: rows added, updated (text or metadata changed) and unchanged;
    texts embedded by the model and vectors taken from the embedding cache."""

    added: int
    updated: int
    unchanged: int
    embedded: int
    from_cache: int
    seconds: float


@dataclass(frozen=True)
class DeleteReport:
    deleted: int
    seconds: float


@dataclass(frozen=True)
class CompactReport:
    """Bytes on disk before and after, vectors no document used any more, seconds."""

    bytes_before: int
    bytes_after: int
    vectors_dropped: int
    seconds: float


def add_documents(engine: "SearchEngine", documents: Iterable[Document], *, batch_size: int = 32,
                  progress: bool = True, on_commit: Callable[[list[str]], None] | None = None,
                  commit_every: int = _BATCH) -> AddReport:
    """Insert new documents and update existing ones (same id); only changed text is embedded.

    Documents are committed ``commit_every`` at a time; ``on_commit`` is called with the ids of each
    batch once it is durably stored.
    """
    if commit_every < 1:
        raise BadInput(f"commit_every must be at least 1, got {commit_every}")
    from tqdm.auto import tqdm

    started = time.perf_counter()
    counts = dict.fromkeys(("added", "updated", "unchanged", "embedded", "from_cache"), 0)
    seen: set[str] = set()
    written = 0
    total = size_hint(documents)
    with storage_errors(engine.path, "every batch reported written is kept, the rest was not written"), \
            writer_lock(engine.path), _writable_store(engine) as store, tqdm(
        total=total, unit="doc", desc="adding", file=sys.stderr, disable=not progress, dynamic_ncols=True
    ) as bar:
        stream = iter(documents)
        truncated_before = engine.embedder.truncated
        while chunk := list(islice(stream, commit_every)):
            for doc in chunk:
                if not isinstance(doc, Document):
                    raise BadInput(f"expected Document objects, got {type(doc).__name__}")
                if doc.id in seen:
                    raise BadInput(f"document id {doc.id!r} appears twice in the input ({written} documents "
                                   "before its batch were written; fix the input and add it again)")
                seen.add(doc.id)
            _add_batch(engine, store, chunk, batch_size, counts)
            written += len(chunk)
            if on_commit is not None:
                on_commit([d.id for d in chunk])
            bar.update(len(chunk))
        engine.embedder.report_truncated(truncated_before, counts["embedded"])
        _sync(engine, store)
    return AddReport(**counts, seconds=time.perf_counter() - started)


def _add_batch(engine: "SearchEngine", store: DocStore, chunk: list[Document], batch_size: int,
               counts: dict[str, int]) -> None:
    existing = store.lookup([d.id for d in chunk])
    new, updated = [], []
    next_id = store.next_int_id()
    for doc in chunk:
        row = existing.get(doc.id)
        if row is None:
            new.append((next_id, doc))
            next_id += 1
        elif (row[1], row[2], row[3]) != (doc.title, doc.text, metadata_json(doc)):
            updated.append((row[0], doc))
        else:
            counts["unchanged"] += 1
    changed = new + updated
    rows, texts = engine.splitter.rows([d for _, d in changed], [i for i, _ in changed])
    keys = engine.embedder.cache_keys(texts)
    wanted = dict(zip(keys, texts))
    cached = store.cached_vectors(list(wanted))  # passages whose text did not change keep their vector
    missing = [k for k in wanted if k not in cached]
    vectors = {}
    if missing:
        vectors = dict(zip(missing, engine.embedder.encode([wanted[k] for k in missing], batch_size)))
    counts["embedded"] += len(missing)
    counts["from_cache"] += len(wanted) - len(missing)
    by_doc: dict[int, list] = {}
    for row, key in zip(rows, keys):
        by_doc.setdefault(row[1], []).append(row + (key,))
    if changed:
        store.upsert([(i, d, by_doc[i]) for i, d in new], [(i, d, by_doc[i]) for i, d in updated], vectors)
    counts["added"] += len(new)
    counts["updated"] += len(updated)


def delete_documents(engine: "SearchEngine", ids: Sequence[str]) -> DeleteReport:
    """Delete documents by id. Unknown ids are an error, and then nothing is deleted."""
    started = time.perf_counter()
    ids = list(dict.fromkeys(str(i) for i in ids))
    if not ids:
        raise BadInput("no document ids to delete")
    with storage_errors(engine.path, "if the deletion was committed, searches already leave those documents out"), \
            writer_lock(engine.path), _writable_store(engine) as store:
        found = store.lookup(ids)
        unknown = [i for i in ids if i not in found]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise BadInput(f"no document with id {', '.join(map(repr, unknown[:5]))}{more} in {engine.path}; "
                           "nothing was deleted")
        if len(ids) >= len(store):
            raise BadInput(f"deleting every document of {engine.path} would leave an empty index; delete the "
                           "folder instead (nothing was deleted)")
        store.delete([found[i][0] for i in ids])
        _sync(engine, store)
    return DeleteReport(len(ids), time.perf_counter() - started)


def compact(engine: "SearchEngine") -> CompactReport:
    """Rebuild the vector index (retraining IVF) and the BM25 side from the store, drop vectors no
    document uses and deleted rows' tombstones, and VACUUM the store."""
    started = time.perf_counter()
    before = folder_size(engine.path)
    with storage_errors(engine.path, "the index is unchanged and searchable"), \
            writer_lock(engine.path), _writable_store(engine) as store:
        engine.index = _rebuild(engine.index, store, engine.manifest.factory)
        _sync(engine, store, rebuilt=True)
        dropped = store.prune()
    return CompactReport(before, folder_size(engine.path), dropped, time.perf_counter() - started)


# --- keeping the derived files in step with the store ------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What the store holds beyond a generation: rows written (ids, vectors), ids deleted, and every
    stored vector when only a rebuild can apply them (HNSW, or tombstones already pruned)."""

    written: np.ndarray
    vectors: np.ndarray
    gone: np.ndarray
    everything: tuple[np.ndarray, np.ndarray] | None = None


def read_changes(index: VectorIndex, store: DocStore, since: int) -> Changes:
    """The store's changes after ``since`` (cheap reads, done inside a read snapshot)."""
    written, vectors, gone = store.changes_since(since)
    rebuild = since < store.pruned_through or (
        not index.can_remove and (len(gone) > 0 or bool(np.isin(written, index.ids()).any())))
    return Changes(written, vectors, gone, store.all_vectors() if rebuild else None)


def apply_changes(index: VectorIndex, changes: Changes) -> VectorIndex:
    """``index`` with ``changes`` applied (in memory): removed and re-added in place, or rebuilt."""
    if changes.everything is not None:
        ids, vectors = changes.everything
        return _rebuild_from(index, ids, vectors, index.factory)
    if len(changes.written) == 0 and len(changes.gone) == 0:
        return index
    if index.can_remove:  # (otherwise read_changes found only new ids: nothing to remove)
        index.remove(np.concatenate([changes.written, changes.gone]))
    if len(changes.written):
        index.add(changes.vectors, changes.written)
    return index


def catch_up(index: VectorIndex, store: DocStore, since: int) -> VectorIndex:
    """``index`` with the store's changes after generation ``since`` applied (in memory)."""
    return apply_changes(index, read_changes(index, store, since))


def update_manifest(engine: "SearchEngine", **fields) -> None:
    """Change manifest fields under the writer lock, on the manifest as it is on disk now."""
    from .manifest import Manifest

    with writer_lock(engine.path):
        dataclasses.replace(Manifest.load(engine.path), **fields).save(engine.path)
    engine.manifest = dataclasses.replace(engine.manifest, **fields)


def _sync(engine: "SearchEngine", store: DocStore, rebuilt: bool = False) -> None:
    """Apply the store's changes to the engine's index, write the derived files, then the manifest."""
    generation = store.generation
    if not rebuilt:
        if generation == engine.manifest.generation:
            return
        engine.index = catch_up(engine.index, store, engine.generation)
    engine.generation = generation
    passages = store.passage_count()
    if engine.index.ntotal != passages:
        raise AssertionError(f"vector index holds {engine.index.ntotal} vectors for {passages} passages")
    _write_vectors(engine.index, engine.path / VECTORS_FILE)
    if engine.manifest.lexical is not None:
        if engine.lexical is None or engine.lexical.generation != generation or rebuilt:
            engine.lexical = rebuild_lexical(store, engine.lexical.config if engine.lexical else
                                             _lexical_config(engine.manifest.lexical), generation)
        _swap_folder(engine.lexical.save, engine.path / LEXICAL_DIR)
    engine.manifest = dataclasses.replace(engine.manifest, documents=len(store), generation=generation,
                                          vectors=passages if engine.manifest.vectors is not None else None)
    engine.manifest.save(engine.path)


def rebuild_lexical(store: DocStore, config: dict, generation: int) -> LexicalIndex:
    """The BM25 side of every stored document or passage (about 1 s per 5,000 SciFact abstracts on one core)."""
    return lexical_from_texts(*store.texts(config.get("unit", "document")), config, generation)


def lexical_from_texts(ids: np.ndarray, texts: list[str], config: dict, generation: int) -> LexicalIndex:
    builder = LexicalBuilder(_lexical_config(config))
    builder.add(texts, ids)
    lexical = builder.finish(allow_empty=True)
    lexical.generation = generation
    return lexical


def _lexical_config(recorded: dict) -> dict:
    from .lexical import DEFAULT_LEXICAL

    return {k: recorded.get(k, v) for k, v in DEFAULT_LEXICAL.items()}


def _rebuild(index: VectorIndex, store: DocStore, factory: str) -> VectorIndex:
    ids, vectors = store.all_vectors()
    return _rebuild_from(index, ids, vectors, factory)


def _rebuild_from(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, factory: str) -> VectorIndex:
    builder = IndexBuilder(index.dim, factory)
    if len(ids):
        builder.add(vectors, ids)
    log.info("rebuilt the %s vector index from %d stored vectors", factory, len(ids))
    return builder.finish()


def _write_vectors(index: VectorIndex, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        index.save(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


def _swap_folder(write: Callable[[Path], None], target: Path) -> None:
    """Write a folder next to ``target`` and swap it in. A crash between the two renames leaves no
    ``target``; readers then rebuild it from the store."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    fsync_folder(target.parent)


@contextmanager
def _writable_store(engine: "SearchEngine") -> Iterator[DocStore]:
    """The store opened for writing, with the engine brought up to date first (another writer may
    have written since it was opened)."""
    store = DocStore(engine.path / DOCS_FILE, writable=True)
    try:
        if not store.has_vectors:
            raise BadInput(f"index {engine.path} was built by an older semsearch and stores no vectors; "
                           "rebuild it (semsearch index … --overwrite) to add or delete documents")
        if engine.index.on_disk:
            raise BadInput(f"index {engine.path} keeps its inverted lists on disk (vectors.ivfdata), which are "
                           "searched, not changed in place; rebuild it (semsearch index … --overwrite)")
        remove_temporaries(engine.path)
        engine.reload()
        yield store
    finally:
        store.close()

