"""Stage 1b — the vector index: FAISS with inner product and the documents' int64 ids.

Vectors are L2-normalised by the embedder, so inner product is cosine.
``factory`` is a FAISS ``index_factory`` string (``"Flat"``, ``"HNSW32"``,
``"IVF1024,Flat"``…). Indexes without native id support are wrapped in
``IDMap2`` so ids stay stable whatever the factory.

>>> import numpy as np
>>> idx = VectorIndex.create(4, "Flat")
>>> idx.add(np.eye(4, dtype="float32"), np.array([10, 11, 12, 13]))
>>> scores, ids = idx.search(np.eye(4, dtype="float32")[:1], k=2)
>>> int(ids[0, 0])
10
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BadInput, IndexNotFound
from .layout import IVFDATA_FILE

__all__ = ["VectorIndex", "IndexBuilder", "AUTO_HNSW_THRESHOLD", "METRIC", "c_stdout_silenced"]

log = logging.getLogger(__name__)

METRIC = "inner_product"
#: With no factory given, indexes of more documents than this use HNSW32 instead of Flat.
AUTO_HNSW_THRESHOLD = 200_000
HNSW_EF_SEARCH = 128
IVF_NPROBE = 16
#: A filtered search of an approximate index matching at most this many documents is exact.
EXACT_FILTER_LIMIT = 10_000


class VectorIndex:
    """A FAISS index of float32 vectors keyed by int64 ids."""

    def __init__(self, index, factory: str):
        self.faiss_index = index
        self.factory = factory

    @classmethod
    def create(cls, dim: int, factory: str) -> "VectorIndex":
        """An empty index; raises :class:`BadInput` for a factory string FAISS rejects."""
        import faiss

        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            raise BadInput(f"invalid FAISS factory string {factory!r}: {detail}") from None
        if faiss.try_extract_index_ivf(inner) is not None:
            faiss.extract_index_ivf(inner).nprobe = min(IVF_NPROBE, faiss.extract_index_ivf(inner).nlist)
            index = inner
        else:
            index = faiss.IndexIDMap2(inner)
        _set_hnsw_ef(inner)
        return cls(index, factory)

    @property
    def ntotal(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.faiss_index.d)

    @property
    def is_trained(self) -> bool:
        return bool(self.faiss_index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        self.faiss_index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BadInput(f"vectors of shape {vectors.shape} do not fit an index of dimension {self.dim}")
        self.faiss_index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    @property
    def on_disk(self) -> bool:
        """Whether the inverted lists live in a separate ``.ivfdata`` file (an IVF index merged with
        ``faiss.contrib.ondisk.merge_ondisk``); such an index is searched, not changed in place."""
        import faiss

        ivf = faiss.try_extract_index_ivf(self.faiss_index)
        return ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)

    @property
    def can_remove(self) -> bool:
        """Whether FAISS can remove vectors from this index in place (not HNSW, NSG, or anything wrapping
        them): asked of FAISS itself, by removing nothing."""
        try:
            self._remove_ids(np.empty(0, dtype=np.int64))
        except RuntimeError:
            return False
        return True

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (absent ones are ignored). HNSW cannot: rebuild it instead (see :attr:`can_remove`)."""
        if len(ids):
            self._remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def _remove_ids(self, ids: np.ndarray) -> None:
        import faiss

        ivf = faiss.try_extract_index_ivf(self.faiss_index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.Hashtable:
            selector = faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))  # what a hashtable map accepts
        else:
            selector = faiss.IDSelectorBatch(ids)
        self.faiss_index.remove_ids(selector)

    def ids(self) -> np.ndarray:
        """Every id in the index (for IVF, read from its inverted lists)."""
        import faiss

        if hasattr(self.faiss_index, "id_map"):
            return faiss.vector_to_array(self.faiss_index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self.faiss_index)
        lists = ivf.invlists
        return np.concatenate([faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                               for i in range(ivf.nlist)] + [np.empty(0, np.int64)]).astype(np.int64)

    def held_vectors(self, ids: np.ndarray) -> np.ndarray | None:
        """The vectors this index holds for ``ids`` (what a search scores against), ``(len(ids), dim)``;
        ``None`` where it cannot give them without changing itself: an IVF index (no id map to look
        them up), or an id it does not hold."""
        import faiss

        if faiss.try_extract_index_ivf(self.faiss_index) is not None:
            return None
        try:
            return self.faiss_index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError:  # an id the index does not hold (FAISS says so in an exception)
            return None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query: ``(scores, ids)``, each ``(n, k)``; id -1 marks an empty slot.

        ``allowed`` (sorted int64 ids) restricts the search to those documents before ranking.
        Flat: FAISS's id selector (exact). Approximate indexes (HNSW, IVF): exact search over the
        allowed vectors when at most :data:`EXACT_FILTER_LIMIT` match, else the id selector, falling
        back to exact for a query that gets fewer than ``min(k, len(allowed))`` hits.
        """
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is None:
            return self.faiss_index.search(queries, k)
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        if len(allowed) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if len(allowed) <= EXACT_FILTER_LIMIT and not self.factory.startswith("Flat"):
            return self._exact(queries, k, allowed)  # few matches: exact is cheap, approximate may miss
        selector = faiss.IDSelectorBatch(allowed)
        params = _search_params(self.faiss_index, selector)
        try:
            scores, ids = self.faiss_index.search(queries, k, params=params)
        except RuntimeError:  # an index type whose search takes no id selector (e.g. PQ)
            return self._exact(queries, k, allowed)
        short = (ids >= 0).sum(axis=1) < min(k, len(allowed))
        if short.any():
            exact_scores, exact_ids = self._exact(queries[short], k, allowed)
            scores[short], ids[short] = exact_scores, exact_ids
        return scores, ids

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        ivf = faiss.try_extract_index_ivf(self.faiss_index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # ids need not be sequential
        vectors = self.faiss_index.reconstruct_batch(allowed).astype(np.float32)
        sims = queries @ vectors.T
        n = min(k, len(allowed))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        scores[:, :n] = np.take_along_axis(sims, top, axis=1)
        ids[:, :n] = allowed[top]
        return scores, ids

    def save(self, path: str | Path) -> None:
        import faiss

        faiss.write_index(self.faiss_index, str(path))

    @classmethod
    def load(cls, path: str | Path, factory: str) -> "VectorIndex":
        import faiss

        if not Path(path).is_file():
            raise IndexNotFound(f"vector file {path} is missing")
        try:
            if (Path(path).parent / IVFDATA_FILE).exists():  # on-disk lists: found beside the vector file
                with c_stdout_silenced():  # where FAISS says so, on stdout
                    index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
            else:
                index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexNotFound(f"vector file {path} is unreadable: {str(exc).strip().splitlines()[-1]}") from None
        return cls(index, factory)


@contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """Discard what C code prints on the process's stdout (file descriptor 1) meanwhile: FAISS's
    on-disk inverted lists report file operations there, which would corrupt ``semsearch query --json``."""
    if sys.stdout is not None:
        sys.stdout.flush()
    libc = ctypes.CDLL(None)
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to protect
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        libc.fflush(None)  # what C buffered goes to /dev/null, not to the restored stdout
        os.dup2(saved, 1)
        os.close(saved)


def _search_params(index, selector):
    """Search parameters carrying ``selector`` of the right type for ``index``'s inner index."""
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else faiss.downcast_index(index)
    if hasattr(inner, "hnsw"):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    return faiss.SearchParameters(sel=selector)


def _set_hnsw_ef(index) -> None:
    import faiss

    inner = faiss.downcast_index(index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = HNSW_EF_SEARCH


class IndexBuilder:
    """Fills a :class:`VectorIndex` from a stream of vector batches.

    With ``factory=None`` the choice waits until it is known whether more than
    :data:`AUTO_HNSW_THRESHOLD` vectors arrive (``Flat`` up to it, ``HNSW32`` above).
    Factories that need training (IVF, PQ) are trained on a seeded random sample
    of all vectors once the stream ends.
    """

    def __init__(self, dim: int, factory: str | None = None, seed: int = 0, train_size: int = 100_000):
        self.dim, self.requested, self.seed, self.train_size = dim, factory, seed, train_size
        self.index = VectorIndex.create(dim, factory) if factory else None  # validates the factory early
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._count = 0

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._count += len(vectors)
        if self.index is None and self._count > AUTO_HNSW_THRESHOLD:
            self.index = VectorIndex.create(self.dim, "HNSW32")
        if self.index is not None and self.index.is_trained:
            self._flush()
            self.index.add(vectors, ids)
        else:
            self._pending.append((vectors, ids))

    def finish(self) -> VectorIndex:
        if self.index is None:
            self.index = VectorIndex.create(self.dim, "Flat")
        if not self.index.is_trained and self._pending:
            vectors = np.concatenate([v for v, _ in self._pending])
            rng = np.random.default_rng(self.seed)
            sample = rng.choice(len(vectors), size=min(self.train_size, len(vectors)), replace=False)
            log.info("training %s on %d of %d vectors", self.index.factory, len(sample), len(vectors))
            try:
                self.index.train(vectors[np.sort(sample)])
            except RuntimeError as exc:
                raise BadInput(
                    f"cannot train FAISS index {self.index.factory!r} on {len(vectors)} vectors: "
                    f"{str(exc).strip().splitlines()[-1]}"
                ) from None
        self._flush()
        return self.index

    def _flush(self) -> None:
        for vectors, ids in self._pending:
            self.index.add(vectors, ids)
        self._pending.clear()
