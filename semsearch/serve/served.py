"""One served index: a search worker that batches queries across requests, and one writer at a time.

The worker thread owns the reader :class:`~semsearch.SearchEngine`: every search of the index runs
there, so no two threads touch the reader's FAISS index, BM25 side or SQLite connection at once.
With micro-batching on, the worker takes every request queued while it was busy (and, when the last
batch held several requests, waits up to ``batch_wait`` for more; up to ``max_batch`` queries),
encodes all their queries in one call of the bi-encoder, then searches each group of requests that
share their options together. Off, it takes one request at a time.

A write (add, delete) runs in the caller's thread on a separate writer engine, under a lock (one
writer at a time). Readers keep answering from the engine they have. Once the store commit and the
derived files are written, a fresh reader is opened from the folder and handed to the worker;
only then is the write acknowledged, so an acknowledged document is searchable by the next request.
Changes made by another process (the CLI) are picked up the same way: before each batch the worker
compares the store's generation with its reader's and, if it moved, opens a fresh reader in the
background.

>>> served = ServedIndex("scifact", "indexes/scifact")                      # doctest: +SKIP
>>> served.start()                                                         # doctest: +SKIP
>>> served.search(SearchJob(["cell division"], k=3)).result()[0][0].id     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..encode.embedder import Embedder
from ..encode.models import check_remote_code
from ..encode.transformer import embedder_loader
from ..errors import BadInput
from ..index.engine import SearchEngine
from ..index.filters import parse_filters
from ..index.layout import MANIFEST_FILE
from ..index.manifest import Manifest
from ..rerank.blend import default_candidates
from ..types import Document, Hit
from .shared import SharedEmbedder

__all__ = ["ServedIndex", "SearchJob", "BatchStats"]

log = logging.getLogger(__name__)

_STOP = object()
_WRITE_BATCH = 8  # texts per model call in an add: searches take turns with the add between calls


@dataclass
class SearchJob:
    """One request's queries and options; its result is a hit list per query."""

    queries: list[str]
    k: int = 10
    mode: str | None = None
    filters: tuple[str, ...] = ()
    rerank: bool = False
    candidates: int | None = None
    future: Future = field(default_factory=Future, repr=False)

    def key(self) -> tuple:
        return (self.k, self.mode, self.filters, self.rerank, self.candidates)


@dataclass
class BatchStats:
    """How the worker has batched: model calls, queries encoded, the largest batch."""

    batches: int = 0
    queries: int = 0
    largest: int = 0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "queries": self.queries, "largest": self.largest,
                "mean": round(self.queries / self.batches, 2) if self.batches else 0.0}


def _manifest_stamp(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """What tells that an index's manifest was replaced (it is written whole and renamed into place)."""
    try:
        st = os.stat(Path(path) / MANIFEST_FILE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def check_index_models(path: str | os.PathLike, trust_remote_code: bool, *, embedder: bool = True) -> None:
    """Refuse, before any model loads, an index whose recorded models (its embedder unless another is given,
    its default reranker) run their own code when ``trust_remote_code`` was not given."""
    manifest = Manifest.load(Path(path))
    if embedder:
        check_remote_code(manifest.embedder, trust_remote_code, "the index's embedder")
    if manifest.reranker:
        check_remote_code(manifest.reranker, trust_remote_code, "the index's reranker")


def check_batching(batch_wait: float, max_batch: int) -> None:
    """Raise :class:`BadInput` unless ``batch_wait`` (seconds) and ``max_batch`` are usable by :class:`ServedIndex`."""
    if not 0 <= batch_wait <= 0.1:
        raise BadInput(f"batch wait must be between 0 and 100 ms, got {batch_wait * 1000:g} ms")
    if max_batch < 1:
        raise BadInput(f"max batch must be at least 1, got {max_batch}")


class ServedIndex:
    """An index served by name. ``micro_batch``: encode queries of concurrent requests together;
    ``batch_wait``: seconds to wait for more requests once the queue is empty, when the last batch held
    several requests (0: take only what queued while busy); ``max_batch``: queries per model call.
    ``embedder``: instead of the one the manifest records (which is loaded at ``precision``/``backend``)."""

    def __init__(self, name: str, path: str | os.PathLike, *, embedder: Embedder | None = None,
                 precision: str | None = None, backend: str | None = None, micro_batch: bool = True,
                 batch_wait: float = 0.002, max_batch: int = 64, trust_remote_code: bool = False):
        check_batching(batch_wait, max_batch)  # models that run their own code: refused where they load
        if embedder is None:
            embedder = embedder_loader(Manifest.load(Path(path)).embedder, precision, backend,
                                       trust_remote_code=trust_remote_code)()
        self.name, self._trust = name, trust_remote_code
        self._manifest_seen = _manifest_stamp(path)  # before opening: a change meanwhile is picked up
        self.engine = engine = SearchEngine.open(path, embedder=SharedEmbedder(embedder),
                                                 trust_remote_code=trust_remote_code)
        self.micro_batch, self.batch_wait, self.max_batch = micro_batch, batch_wait, max_batch
        self.reranker = engine.default_reranker() if engine.manifest.reranker else None
        self._reranker_config = engine.manifest.reranker  # the manifest entry self.reranker was loaded from
        self.stats = BatchStats()
        self._jobs: queue.Queue = queue.Queue()
        self._write_lock = threading.Lock()
        self._writer: SearchEngine | None = None
        self._fresh: SearchEngine | None = None  # a newer reader, handed over by a writer or a refresh
        self._refreshing = threading.Lock()
        self._handover = threading.Lock()  # guards _fresh between a writer and the worker
        self._thread: threading.Thread | None = None
        self._last_batch = 1  # requests in the last batch

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the search worker (after a first encode, so the model is warm)."""
        if self._thread is not None:
            return
        self.engine.embedder.encode(["warm up"])
        if self.reranker is not None:
            self.reranker.score([("warm up", "warm up")])
        self._thread = threading.Thread(target=self._run, name=f"semsearch-search-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish queued searches, stop the worker, close the engines (waits for a write in progress)."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread.join()
            self._thread = None
        with self._write_lock:
            for engine in {id(e): e for e in (self.engine, self._fresh, self._writer) if e is not None}.values():
                engine.close()
            self._writer = self._fresh = None

    # --- searching --------------------------------------------------------------------------

    def check(self, job: SearchJob) -> None:
        """Raise :class:`BadInput` now for what would fail in the worker: mode, filters, reranking."""
        self.engine.check_mode(job.mode)
        parse_filters(job.filters)
        if job.rerank and self.reranker is None:
            self._refresh_if_stale(manifest_only=True)  # a reranker set meanwhile (semsearch set-reranker) serves the next request
            raise BadInput(f"index {self.name!r} has no default reranker (semsearch set-reranker)")
        if job.candidates is not None and not job.rerank:
            raise BadInput("candidates: only with rerank")
        if job.rerank and job.candidates is not None and job.candidates < job.k:
            raise BadInput(f"candidates ({job.candidates}) must be at least k ({job.k})")

    def search(self, job: SearchJob) -> Future:
        """Queue ``job``; its future gets a hit list per query (or the error)."""
        if self._thread is None:
            raise RuntimeError(f"index {self.name!r} is not started")
        self._jobs.put(job)
        return job.future

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            batch = [job]
            if self.micro_batch:
                stop = self._gather(batch)
            else:
                stop = False
            self._swap_reader()
            try:
                self._search_batch(batch)
            except BaseException as exc:  # noqa: BLE001  (the worker must survive; each request gets the error)
                log.exception("search batch of index %s failed", self.name)
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            if stop:
                return

    def _gather(self, batch: list[SearchJob]) -> bool:
        """Add queued jobs to ``batch`` up to ``max_batch`` queries; wait up to ``batch_wait`` for more."""
        size = len(batch[0].queries)
        # wait only where requests come concurrently (the last batch held several): one client alone pays nothing
        deadline = time.monotonic() + (self.batch_wait if self._last_batch > 1 else 0.0)
        while size < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    job = self._jobs.get(timeout=left)
                except queue.Empty:
                    break
            if job is _STOP:
                self._last_batch = len(batch)
                return True
            batch.append(job)
            size += len(job.queries)
        self._last_batch = len(batch)
        return False

    def _search_batch(self, batch: list[SearchJob]) -> None:
        engine = self.engine
        dense = [j for j in batch if engine.check_mode(j.mode) != "lexical"]
        texts = [q for j in dense for q in j.queries]
        vectors: dict[int, np.ndarray] = {}
        if texts:
            encoded = engine.embedder.encode(texts)
            self.stats.batches += 1
            self.stats.queries += len(texts)
            self.stats.largest = max(self.stats.largest, len(texts))
            row = 0
            for j in dense:
                vectors[id(j)] = encoded[row:row + len(j.queries)]
                row += len(j.queries)
        groups: dict[tuple, list[SearchJob]] = {}
        for j in batch:
            groups.setdefault(j.key(), []).append(j)
        for jobs in groups.values():
            first = jobs[0]
            queries = [q for j in jobs for q in j.queries]
            group_vectors = np.vstack([vectors[id(j)] for j in jobs]) if id(first) in vectors else None
            reranker = self.reranker if first.rerank else None
            candidates = first.candidates or default_candidates(reranker, first.k)
            try:
                if first.rerank and reranker is None:  # cleared by another process since the request was checked
                    raise BadInput(f"index {self.name!r} has no default reranker (semsearch set-reranker)")
                results = engine.search_many(queries, first.k, mode=first.mode, filters=first.filters,
                                             reranker=reranker, candidates=candidates, vectors=group_vectors)
            except Exception as exc:  # noqa: BLE001  (this group's requests fail; the others go on)
                if not isinstance(exc, BadInput):
                    log.exception("search on index %s failed", self.name)
                for j in jobs:
                    j.future.set_exception(exc)
                continue
            taken = 0
            for j in jobs:
                j.future.set_result(results[taken:taken + len(j.queries)])
                taken += len(j.queries)

    # --- keeping the reader fresh -----------------------------------------------------------

    def _swap_reader(self) -> None:
        """In the worker: take a newer reader if one was handed over; start a refresh if another process
        wrote to the store, or changed the manifest (``semsearch tune``, ``set-reranker``), since the reader
        was opened."""
        with self._handover:
            fresh, self._fresh = self._fresh, None
        if fresh is not None:
            old, self.engine = self.engine, fresh
            if old is not self._writer:
                old.close()
        else:
            self._refresh_if_stale()

    def _refresh_if_stale(self, manifest_only: bool = False) -> None:
        """Start reopening the reader in the background if the manifest (or, in the worker, the store) moved
        under it."""
        stale = (_manifest_stamp(self.engine.path) != self._manifest_seen
                 or (not manifest_only and self.engine.store.generation != self.engine.generation))
        if stale and not self._write_lock.locked() and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh, name=f"semsearch-refresh-{self.name}", daemon=True).start()

    def _refresh(self) -> None:
        try:
            with self._write_lock:
                self._open_fresh()
        except Exception:  # noqa: BLE001  (the current reader keeps serving)
            log.exception("could not reopen index %s after an outside write", self.name)
        finally:
            self._refreshing.release()

    def _open_fresh(self) -> None:
        """Open a new reader and hand it to the worker; then, if the manifest names another default reranker
        than the one loaded, load that (one that fails to load is logged, and the one loaded stays)."""
        seen = _manifest_stamp(self.engine.path)
        fresh = SearchEngine.open(self.engine.path, embedder=self.engine.embedder, trust_remote_code=self._trust)
        with self._handover:
            stale, self._fresh = self._fresh, fresh
        if stale is not None:
            stale.close()
        self._manifest_seen = seen
        wanted = fresh.manifest.reranker
        if wanted != self._reranker_config:
            self._reranker_config = wanted  # tried once per change of the manifest, not at every write
            try:
                self.reranker = fresh.default_reranker() if wanted else None
            except Exception:  # noqa: BLE001  (the write or refresh that got here has succeeded)
                log.exception("index %s: could not load its new default reranker %s; still reranking with %s",
                              self.name, wanted.get("model"), self.reranker.name if self.reranker else "none")
            else:
                log.info("index %s: default reranker now %s", self.name,
                         self.reranker.name if self.reranker else "none")

    # --- writing ----------------------------------------------------------------------------

    def add(self, documents: Sequence[Document]):
        """Insert or update ``documents`` (one writer at a time); returns the :class:`AddReport` once they
        are committed and searchable."""
        with self._write_lock:
            report = self._write().add(documents, progress=False, batch_size=_WRITE_BATCH)
            self._open_fresh()
        return report

    def delete(self, ids: Sequence[str]):
        """Delete documents by id; returns the :class:`DeleteReport` once searches leave them out."""
        with self._write_lock:
            report = self._write().delete(ids)
            self._open_fresh()
        return report

    def _write(self) -> SearchEngine:
        if self._writer is None:
            self._writer = SearchEngine.open(self.engine.path, embedder=self.engine.embedder, lazy=False)
        return self._writer

    def info(self) -> dict:
        """What ``GET /indexes/{name}`` answers: the manifest's summary, counts, defaults."""
        engine, m = self.engine, self.engine.manifest
        return {
            "name": self.name,
            "documents": len(engine),
            "passages": m.vector_count,
            "generation": engine.generation,
            "model": m.embedder.get("model"),
            "pooling": m.embedder.get("pooling"),
            "dim": m.dim,
            "precision": m.embedder.get("precision", "fp32"),
            "factory": m.factory,
            "default_mode": engine.default_mode,
            "modes": ["dense"] + (["lexical", "hybrid"] if engine.lexical is not None else []),
            "lexical_unit": (m.lexical or {}).get("unit", "document") if m.lexical else None,
            "fusion": engine.fusion.to_dict(),
            "passages_config": m.passages,
            "reranker": None if self.reranker is None else {
                "model": self.reranker.name, "max_length": self.reranker.max_length,
                "candidates": default_candidates(self.reranker, 0)},
            "micro_batching": self.micro_batch,
            "format_version": m.format_version,
            "created": m.created,
        }


def hits_json(hits: list[Hit]) -> list[dict]:
    return [h.to_dict() for h in hits]
