"""Stage 1 at scale: build an index on a Ray cluster (``semsearch index --engine ray``).

The work goes to Ray (``pip install 'semsearch[ray]'``), not to a scheduler of ours:

1. **Embed.** The corpus (JSONL, CSV/TSV or Parquet: a file, or a folder of files of one format) is
   read as a Ray Dataset and embedded with ``map_batches`` over a pool of actors, each of which loads
   the model once. The output is written as Parquet shards of (id, title, text, metadata, cache key,
   vector) into a staging folder inside the new index's temporary folder. Ray Data restarts an actor
   that dies and reruns its batch (its defaults for actor pools). The output keeps the corpus order
   (``preserve_order``), so documents get the same int ids as in a local build, and a build is
   reproducible.
2. **Store.** The driver reads the shards in order into the SQLite document store (vectors included,
   as in a local build) and the BM25 side, keeping a seeded random sample of the vectors.
3. **Index**, following the FAISS recipe for large indexes: train the index (IVF coarse quantizer,
   PQ/SQ codebooks) on the random sample, add each of ``shards`` contiguous slices of the vectors to a
   copy of the trained empty index in a Ray task (rerun by Ray if it fails), then merge the shard
   indexes (``merge_from``). With ``on_disk=True`` the inverted lists are merged into
   ``vectors.ivfdata`` instead (``faiss.contrib.ondisk.merge_ondisk``), so the index need not fit in
   RAM; such an index is searched but not changed in place. HNSW cannot merge: its vectors are added
   on the driver.

The result is an ordinary index folder, read by ``SearchEngine.open`` and ``semsearch query``. On a
cluster of several machines the index path must be on storage every node sees (the actors write the
shards there). Ray moves the embedder to its actors with its own serialisation; nothing semsearch
writes to disk is pickled.

>>> engine = build_with_ray("corpus.jsonl", "indexes/big", factory="IVF1024,PQ32", shards=8)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..corpus.readers import document_from_record, json_record
from ..encode.embedder import Embedder
from ..encode.transformer import TransformerEmbedder, embedder_from_config
from ..errors import BadInput, ModelError
from ..files import atomic_folder
from ..index.layout import (
    DOCS_FILE,
    LEXICAL_DIR,
    VECTORS_FILE,
    check_target,
    storage_errors,
    writer_lock,
)
from ..index.lexical import DEFAULT_LEXICAL, LexicalBuilder, check_lexical_unit
from ..index.manifest import Manifest, format_version_for
from ..index.passages import PassageSplitter, Span, passage_text
from ..index.store import DocStore, metadata_json
from ..index.vectors import AUTO_HNSW_THRESHOLD, METRIC, VectorIndex
from ..types import Document
from .corpus import RAY_FORMATS, check_columns, corpus_files, read_dataset
from .shards import (
    IDS_SUFFIX,
    build_sharded,
    ondisk_capable,
    parquet_vectors,
    ray_call,
    train_size,
)

if TYPE_CHECKING:
    from ..index.engine import SearchEngine

__all__ = ["build_with_ray", "corpus_files", "RAY_FORMATS"]

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"  # staging: Parquet shards of embedded documents, removed once the index is written
FREE_CPU_WAIT_S = 60.0  # how long a build waits for the CPUs it needs before giving up
_STORE_BATCH = 1024  # documents per SQLite commit on the driver


def build_with_ray(
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    embedder: Embedder | None = None,
    factory: str | None = None,
    shards: int | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    batch_size: int = 32,
    rows_per_batch: int = 1024,
    format: str | None = None,
    id_field: str | None = None,
    text_field: str = "text",
    title_field: str = "title",
    lexical: bool = True,
    on_disk: bool = False,
    overwrite: bool = False,
    ray_address: str | None = None,
    progress: bool = True,
    seed: int = 0,
    passages: str = "auto",
    passage_tokens: int | None = None,
    passage_overlap: int | None = None,
    lexical_unit: str = "document",
) -> "SearchEngine":
    """Embed ``source`` on Ray and write an index folder at ``path``; see the module docstring.

    ``actors`` × ``cpus_per_actor`` CPUs embed (default: every CPU of the cluster but one, which
    Ray's read tasks need); each actor reads ``rows_per_batch`` records at a time and runs the model on
    ``batch_size`` texts of similar length. ``shards`` Ray tasks fill the vector index (default: the
    cluster's CPU count). ``ray_address`` joins a running cluster; without it, a Ray session already
    started in this process is used, else a local one is started and shut down afterwards. The other
    arguments are those of :meth:`SearchEngine.build` and :func:`read_corpus`.
    """
    from ..index.engine import SearchEngine

    path = Path(path)
    check_target(path, overwrite)
    files, fmt = corpus_files(source, format)
    fields = (id_field, text_field, title_field)
    check_columns(files, fmt, fields)
    for name, value in (("shards", shards), ("actors", actors), ("cpus_per_actor", cpus_per_actor),
                        ("batch_size", batch_size), ("rows_per_batch", rows_per_batch)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise BadInput(f"{name} must be a positive integer, got {value!r}")
    embedder = embedder or TransformerEmbedder()
    splitter = PassageSplitter(embedder, mode=passages, tokens=passage_tokens, overlap=passage_overlap)
    check_lexical_unit(lexical_unit)
    if factory is not None:
        VectorIndex.create(embedder.dim, factory)  # a bad factory string fails before any work
    if on_disk and (factory is None or not ondisk_capable(VectorIndex.create(embedder.dim, factory))):
        raise BadInput(f"on-disk inverted lists need an IVF factory with plain inverted lists (e.g. IVF4096,PQ32; "
                       f"not fast-scan or IVFPQR), not {factory or 'auto'!r}")
    with storage_errors(path, "nothing was written there (the previous index, if any, is unchanged)"), \
            writer_lock(path), _ray_session(ray_address, progress) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = actors or max(1, (cpus - 1) // cpus_per_actor)
        if actors * cpus_per_actor > cpus - 1:
            raise BadInput(f"{actors} actors x {cpus_per_actor} CPUs leave no CPU for Ray's read tasks on a cluster "
                           f"of {cpus} CPUs (the job would hang); use at most {cpus - 1} CPUs for actors")
        shards = shards or cpus
        _wait_for_cpus(ray, actors * cpus_per_actor + 1)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with atomic_folder(path) as tmp:
            stage = tmp / SHARDS_DIR
            ray_call(_embed, ray, files, fmt, fields, stage, embedder, splitter.config(), actors, cpus_per_actor,
                     batch_size, rows_per_batch)
            timings["embed_seconds"] = time.perf_counter() - started
            parts = sorted(stage.glob("*.parquet"))  # names follow the dataset's (preserved) order
            t0 = time.perf_counter()
            total = sum(_rows(parts))
            chosen = factory or ("Flat" if total <= AUTO_HNSW_THRESHOLD else "HNSW32")
            count, sample, cut, rows, lexical_config = _store(parts, tmp, embedder.dim, lexical, progress, seed,
                                                              train_size(VectorIndex.create(embedder.dim, chosen)),
                                                              splitter.id_bits, lexical_unit)
            timings["store_seconds"] = time.perf_counter() - t0
            if count == 0:
                raise BadInput("the corpus is empty: no documents to index")
            if cut:
                log.warning("%d of %d texts were longer than %d tokens; the model read their first %d", cut, total,
                            getattr(embedder, "max_length", 0), getattr(embedder, "max_length", 0))
            t0 = time.perf_counter()
            index, merged = build_sharded(ray, parts, rows, chosen, embedder.dim, sample, min(shards, count),
                                          tmp, on_disk, progress)
            if not on_disk:
                index.save(tmp / VECTORS_FILE)
            timings["index_seconds"] = time.perf_counter() - t0
            shutil.rmtree(stage)
            timings["seconds"] = time.perf_counter() - started
            build = {k: round(v, 3) for k, v in timings.items()}
            build.update(engine="ray", actors=actors, cpus_per_actor=cpus_per_actor, shards=merged, on_disk=on_disk)
            Manifest(
                embedder=embedder.config(),
                format_version=format_version_for(embedder.config(), on_disk, splitter.id_bits),
                factory=chosen,
                factory_requested=factory or "auto",
                metric=METRIC,
                documents=count,
                vectors=total,
                passages=splitter.config(),
                lexical=lexical_config,
                build=build,
                generation=1,
            ).save(tmp)
            check_target(path, overwrite)  # nothing appeared there meanwhile
    log.info("indexed %d documents into %s on Ray (%s, %d shards, %d actors)", count, path, chosen, merged, actors)
    return SearchEngine.open(path, embedder=embedder)


# --- step 1: embed on Ray --------------------------------------------------------------------


def _worker_embedder(embedder: Embedder) -> Callable[[], Embedder]:
    """What an actor calls to get its embedder: a Hugging Face one is loaded again from its config (the
    model files travel as a name, not as weights); any other embedder is copied as it is."""
    if isinstance(embedder, TransformerEmbedder):
        config = embedder.config()
        return functools.partial(embedder_from_config, config, config["precision"], config["backend"],
                                 trust_remote_code=bool(config.get("trust_remote_code")))
    return functools.partial(_same, embedder)


def _same(embedder: Embedder) -> Embedder:
    return embedder


class _EmbedActor:
    """A Ray Data actor: loads the embedder once, then turns batches of records into embedded documents."""

    def __init__(self, make_embedder: Callable[[], Embedder], expected: dict, passages: dict, fmt: str,
                 fields: tuple, batch_size: int, threads: int):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # a worker's load report would reach the driver
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if expected.get("kind") == "transformers":
            import torch

            torch.set_num_threads(threads)
        self.embedder = make_embedder()
        if self.embedder.config() != expected:
            raise ModelError(f"a Ray worker loaded embedder {self.embedder.config()}, but the index is being built "
                             f"with {expected} (are the same model files on every node?)")
        self.splitter = PassageSplitter.from_config(self.embedder, passages)
        self.fmt, self.fields, self.batch_size = fmt, fields, batch_size

    def __call__(self, batch):
        """One row per passage; a document's fields ride on its first passage's row (``passage`` 0)."""
        import pyarrow as pa

        docs = self._documents(batch)
        rows, texts = self.splitter.rows(docs, range(len(docs)))  # the same passages as a local build
        before = self.embedder.truncated
        vectors = self.embedder.encode(texts, self.batch_size)
        cut = np.zeros(len(rows), dtype=np.int32)
        if len(rows):
            cut[0] = self.embedder.truncated - before  # the batch's count, carried by its first row
        mask = (1 << self.splitter.id_bits) - 1
        number = [row[0] & mask for row in rows]
        first = [docs[row[1]] if j == 0 else None for row, j in zip(rows, number)]
        dim = self.embedder.dim
        return pa.table({
            "id": [d.id if d else "" for d in first],
            "title": [d.title if d else "" for d in first],
            "text": [d.text if d else "" for d in first],
            "metadata": [metadata_json(d) if d else "" for d in first],
            "passage": pa.array(number, pa.int32()),
            "start": pa.array([row[2] for row in rows], pa.int64()),
            "end": pa.array([row[3] for row in rows], pa.int64()),
            "page": pa.array([row[4] for row in rows], pa.int32()),
            "key": self.embedder.cache_keys(texts),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
            "truncated": cut,
        })

    def _documents(self, batch) -> list[Document]:
        if self.fmt in ("csv", "tsv"):  # already read into documents by ray_corpus._csv_documents
            columns = [batch.column(c).to_pylist() for c in ("id", "text", "title", "metadata")]
            return [Document(i, text, title, json.loads(meta)) for i, text, title, meta in zip(*columns)]
        return [document_from_record(record, where, *self.fields) for record, where in self._records(batch)]

    def _records(self, batch) -> Iterator[tuple[dict, str]]:
        if self.fmt != "jsonl":
            for number, record in enumerate(batch.to_pylist(), start=1):
                yield record, f"record {number} of a {self.fmt} batch"
            return
        for line, path, number in zip(*(batch.column(c).to_pylist() for c in ("line", "path", "number"))):
            yield json_record(line, f"{path}:{number}"), f"{path}:{number}"


def _embed(ray, files, fmt, fields, stage: Path, embedder: Embedder, passages: dict, actors: int,
           cpus_per_actor: int, batch_size: int, rows_per_batch: int) -> None:
    dataset = read_dataset(ray, files, fmt, fields, rows_per_batch).map_batches(
        _EmbedActor,
        fn_constructor_args=(_worker_embedder(embedder), embedder.config(), passages, fmt, fields, batch_size,
                             cpus_per_actor),
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
    )  # Ray Data restarts an actor that dies and reruns its batch (its defaults for actor pools)
    dataset.write_parquet(str(stage))


# --- step 2: the document store, on the driver -------------------------------------------------


def _rows(parts: list[Path]) -> list[int]:
    import pyarrow.parquet as pq

    return [pq.ParquetFile(p).metadata.num_rows for p in parts]


def _store(parts: list[Path], tmp: Path, dim: int, lexical: bool, progress: bool, seed: int, sample_size: int,
           id_bits: int, lexical_unit: str) -> tuple[int, np.ndarray, int, list[int], dict | None]:
    """Read the shards in order into the store (document int ids 0, 1, … in that order, passage ids from
    them) and the BM25 side; write each shard's passage ids beside it (for the vector index); return the
    document count, a seeded random sample of up to ``sample_size`` vectors, the number of truncated
    texts, each shard's row (passage) count and the BM25 side's config (``None``: no BM25 side)."""
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    rows = _rows(parts)
    total = sum(rows)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(sample_size, total), replace=False)) if total else np.empty(0, int)
    sample, count, cut, seen = [], 0, 0, 0
    builder = LexicalBuilder({**DEFAULT_LEXICAL, "unit": lexical_unit}) if lexical else None
    current: Document | None = None  # the document whose passages are being read (they may span batches)
    columns = ["id", "title", "text", "metadata", "passage", "start", "end", "page", "key", "truncated"]
    with DocStore(tmp / DOCS_FILE, create=True, id_bits=id_bits) as store, tqdm(
        total=total, unit="passage", desc="storing", file=sys.stderr, disable=not progress, dynamic_ncols=True
    ) as bar:
        for part in parts:
            part_ids = []
            for batch in pq.ParquetFile(part).iter_batches(batch_size=_STORE_BATCH):
                table = batch.select(columns).to_pydict()
                docs, doc_ids, passages, texts = [], [], [], []
                for at, j in enumerate(table["passage"]):
                    if j == 0:
                        current = Document(table["id"][at], table["text"][at], table["title"][at],
                                           json.loads(table["metadata"][at]))
                        docs.append(current)
                        doc_ids.append(count)
                        count += 1
                    span = (table["start"][at], table["end"][at])
                    passages.append(((count - 1) << id_bits | j, count - 1, *span, table["page"][at],
                                     table["key"][at]))
                    texts.append(passage_text(current.title, current.text, Span(*span)))
                vectors = parquet_vectors(batch.column("vector"), dim)
                store.add(docs, doc_ids, passages, vectors, generation=1)
                pids = np.array([p[0] for p in passages], dtype=np.int64)
                part_ids.append(pids)
                if builder is not None:
                    if lexical_unit == "passage":
                        builder.add(texts, pids)
                    else:
                        builder.add([d.embedding_text for d in docs], np.array(doc_ids, dtype=np.int64))
                picked = chosen[(chosen >= seen) & (chosen < seen + len(passages))] - seen
                sample.append(vectors[picked])
                cut += int(sum(table["truncated"]))
                seen += len(passages)
                bar.update(len(passages))
            ids = np.concatenate(part_ids) if part_ids else np.empty(0, np.int64)
            np.save(str(part) + IDS_SUFFIX, ids, allow_pickle=False)
    config = None
    if builder is not None and count:
        lexical_index = builder.finish()
        lexical_index.generation = 1
        lexical_index.save(tmp / LEXICAL_DIR)
        config = lexical_index.config
    return count, np.concatenate(sample) if sample else np.empty((0, dim), np.float32), cut, rows, config


# --- the Ray session -----------------------------------------------------------------------------


def _wait_for_cpus(ray, needed: int, timeout: float = FREE_CPU_WAIT_S) -> None:
    """Wait until ``needed`` CPUs are free. The actors of a job that just ended (a previous build in this
    process) release theirs a moment later; a job started before that would wait for CPUs forever."""
    deadline = time.monotonic() + timeout
    gc.collect()  # a finished job's actor handles sit in reference cycles; collected, the actors exit
    while (free := ray.available_resources().get("CPU", 0)) < needed:
        if time.monotonic() > deadline:
            raise BadInput(f"the Ray cluster has {free:g} free CPUs after {timeout:g} s; this build needs {needed} "
                           "(actors x CPUs per actor, plus one for reading)")
        time.sleep(0.2)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BadInput("the Ray engine needs Ray: pip install 'semsearch[ray]'") from None
    return ray


@contextmanager
def _ray_session(address: str | None, progress: bool) -> Iterator:
    """Ray, initialised: the session this process already has, else one joined at ``address`` or started
    here (and shut down afterwards). Dataset output keeps its input order for the duration."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False,  # quiet: workers' own log lines stay in Ray's logs
                     logging_level=logging.WARNING if progress else logging.ERROR, log_to_driver=progress)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BadInput(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        started = True
    elif address:
        log.warning("Ray is already initialised in this process; ray_address %s is not used", address)
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    try:
        yield ray
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started:
            ray.shutdown()
