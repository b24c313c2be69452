"""Stage 1, writing: a new index folder from a stream of documents.

Documents are read, embedded and stored 1,024 at a time (one SQLite commit each) into a temporary
folder beside the target, which replaces the target only when everything, manifest last, is written
(:func:`semsearch.files.atomic_folder`). A build killed with ``kill -9`` leaves the old index in
place, and its temporary folder: the next build of the same path reuses the vectors stored there.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Iterable

import numpy as np

from ..corpus.readers import size_hint
from ..encode.embedder import Embedder
from ..errors import BadInput, SemsearchError
from ..files import atomic_folder
from ..types import Document
from .layout import DOCS_FILE, LEXICAL_DIR, VECTORS_FILE, check_target
from .lexical import DEFAULT_LEXICAL, LexicalBuilder, LexicalIndex, check_lexical_unit
from .manifest import Manifest, format_version_for
from .passages import PassageSplitter
from .store import DocStore
from .vectors import METRIC, IndexBuilder, VectorIndex

__all__ = ["build_index"]

log = logging.getLogger(__name__)

_CHUNK = 1024  # documents read, embedded and stored together (one commit; batches sorted by length within it)


def build_index(documents: Iterable[Document], path: Path, embedder: Embedder, *, factory: str | None,
                batch_size: int, lexical: bool, overwrite: bool, progress: bool,
                splitter: PassageSplitter | None = None, lexical_unit: str = "document",
                ) -> tuple[Manifest, VectorIndex, LexicalIndex | None]:
    """Write a new index folder at ``path`` (the caller holds its writer lock); see :meth:`SearchEngine.build`."""
    from tqdm.auto import tqdm

    splitter = splitter or PassageSplitter(embedder)
    check_lexical_unit(lexical_unit)
    builder = IndexBuilder(embedder.dim, factory)
    lexical_builder = LexicalBuilder({**DEFAULT_LEXICAL, "unit": lexical_unit}) if lexical else None
    timings = {"dense_seconds": 0.0, "lexical_seconds": 0.0}
    started = time.perf_counter()
    leftovers = _interrupted_builds(path)  # a killed build's vectors: reused, not embedded again
    truncated_before = embedder.truncated
    embedded = False  # once every vector is stored, a failure (a factory that cannot train) keeps them for a rebuild
    with atomic_folder(path, keep_on_error=lambda exc: embedded and isinstance(exc, BadInput)) as tmp:
        total = size_hint(documents)
        count = reused = passages = 0
        with DocStore(tmp / DOCS_FILE, create=True, id_bits=splitter.id_bits) as store, tqdm(
            total=total, unit="doc", desc="indexing", file=sys.stderr, disable=not progress, dynamic_ncols=True
        ) as bar:
            stream = iter(documents)
            while chunk := list(islice(stream, _CHUNK)):
                for doc in chunk:
                    if not isinstance(doc, Document):
                        raise BadInput(f"expected Document objects, got {type(doc).__name__}")
                ids = np.arange(count, count + len(chunk), dtype=np.int64)
                t0 = time.perf_counter()
                rows, texts = splitter.rows(chunk, ids)
                keys = embedder.cache_keys(texts)
                vectors, found = _embed_reusing(embedder, texts, keys, leftovers, batch_size,
                                                _docs_done(bar, len(chunk), len(texts)))
                reused += found
                store.add(chunk, ids, [row + (key,) for row, key in zip(rows, keys)], vectors, generation=1)
                pids = np.array([row[0] for row in rows], dtype=np.int64)
                builder.add(vectors, pids)
                t1 = time.perf_counter()
                if lexical_builder is not None:
                    if lexical_unit == "passage":
                        lexical_builder.add(texts, pids)
                    else:
                        lexical_builder.add([d.embedding_text for d in chunk], ids)
                timings["dense_seconds"] += t1 - t0
                timings["lexical_seconds"] += time.perf_counter() - t1
                count += len(chunk)
                passages += len(rows)
                bar.set_postfix(passages=passages, refresh=False)
        if count == 0:
            raise BadInput("the corpus is empty: no documents to index")
        if reused:
            log.info("%d of %d vectors came from an interrupted build of %s", reused, passages, path)
        embedder.report_truncated(truncated_before, passages)
        t0 = time.perf_counter()
        embedded = True
        try:
            index = builder.finish()
        except BadInput as exc:
            raise BadInput(f"{exc}; the {passages} vectors embedded are kept beside {path.name}, and building it "
                           "again (with another factory) reuses them") from None
        index.save(tmp / VECTORS_FILE)
        t1 = time.perf_counter()
        lexical_index = None
        if lexical_builder is not None:
            lexical_index = lexical_builder.finish()
            lexical_index.generation = 1
            lexical_index.save(tmp / LEXICAL_DIR)
        timings["dense_seconds"] += t1 - t0
        timings["lexical_seconds"] += time.perf_counter() - t1
        timings["seconds"] = time.perf_counter() - started
        manifest = Manifest(
            embedder=embedder.config(),
            format_version=format_version_for(embedder.config(), id_bits=splitter.id_bits),
            factory=index.factory,
            factory_requested=factory or "auto",
            metric=METRIC,
            documents=count,
            vectors=passages,
            passages=splitter.config(),
            lexical=lexical_index.config if lexical_index is not None else None,
            build={k: round(v, 3) for k, v in timings.items()},
            generation=1,
        )
        manifest.save(tmp)
        check_target(path, overwrite)  # nothing appeared there meanwhile
    log.info("indexed %d documents (%d passages) into %s (%s%s)", count, passages, path, index.factory,
             " + BM25" if lexical else "")
    for store in leftovers:
        store.close()
        shutil.rmtree(Path(store.path).parent, ignore_errors=True)
    return manifest, index, lexical_index


def _docs_done(bar, docs: int, texts: int):
    """A progress callback counting embedded passages as the share of a chunk's documents they stand for."""
    state = {"texts": 0, "shown": 0}

    def update(n: int) -> None:
        state["texts"] += n
        now = docs * state["texts"] // max(texts, 1)
        bar.update(now - state["shown"])
        state["shown"] = now

    return update


def _interrupted_builds(path: Path) -> list[DocStore]:
    """Document stores left by builds of ``path`` that were killed (their temporary folders remain)."""
    stores = []
    for folder in sorted(path.parent.glob(f".{path.name}.tmp-*")):
        try:
            stores.append(DocStore(folder / DOCS_FILE))
        except SemsearchError:  # killed before its store was usable
            shutil.rmtree(folder, ignore_errors=True)
    return stores


def _embed_reusing(embedder: Embedder, texts: list[str], keys: list[str], stores: list[DocStore], batch_size: int,
                   on_batch) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``: from the stores where they hold the key, else from the embedder."""
    found: dict[str, np.ndarray] = {}
    for store in stores:
        try:
            found.update(store.cached_vectors([k for k in keys if k not in found]))
        except sqlite3.DatabaseError:  # a store from before stored vectors, or damaged: ignore it
            continue
    missing = [i for i, k in enumerate(keys) if k not in found]
    if not found:
        return embedder.encode(texts, batch_size, on_batch=on_batch), 0
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    if missing:
        out[missing] = embedder.encode([texts[i] for i in missing], batch_size, on_batch=on_batch)
    for i, key in enumerate(keys):
        if key in found:
            out[i] = found[key]
    on_batch(len(texts) - len(missing))
    return out, len(texts) - len(missing)
