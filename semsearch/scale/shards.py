"""Stage 1 at scale, second half: the vector index of a Ray build, by the FAISS recipe for large indexes.

Train the index (IVF coarse quantizer, PQ/SQ codebooks) on a random sample; add each of ``shards``
contiguous slices of the vectors (read from the Parquet parts the embedding step wrote) to a copy of the
trained empty index in a Ray task; merge the shard indexes with ``merge_from``, or merge their inverted
lists into ``vectors.ivfdata`` with ``faiss.contrib.ondisk.merge_ondisk``. Used by
:mod:`semsearch.scale.build`; plain functions on Parquet parts and numpy arrays.

>>> shard_slices([3, 3], 2)
[(0, [(0, 0, 3)]), (3, [(1, 0, 3)])]
"""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import BadInput, SemsearchError
from ..index.layout import IVFDATA_FILE, VECTORS_FILE
from ..index.vectors import VectorIndex, c_stdout_silenced

__all__ = ["build_sharded", "shard_slices", "IDS_SUFFIX", "train_size", "ondisk_capable", "ray_call", "parquet_vectors",
           "TRAIN_SIZE", "RETRIES"]

log = logging.getLogger(__name__)

RETRIES = 3  # times Ray reruns a failed shard task
TRAIN_SIZE = 100_000  # vectors sampled to train IVF/PQ (as in a local build), or 40 per IVF list if more


def ray_call(call: Callable, *args):
    """``call(*args)``, where Ray runs our code. Ray wraps an exception raised in a worker (in its own
    error types, the remote traceback in the message); a semsearch error among its causes is raised again
    as itself, with its own one-line message.

    It is raised outside the ``except`` block and with ``call`` dropped, so nothing keeps Ray's
    exception or the failed job alive: its actors (and their CPUs) would otherwise stay reserved."""
    try:
        return call(*args)
    except Exception as exc:
        error = _semsearch_error(exc)
        if error is None:
            raise
    finally:
        gc.collect()  # a finished job's actor handles sit in reference cycles; collected, the actors exit
    del call, args
    gc.collect()
    raise error


def _semsearch_error(exc: BaseException) -> SemsearchError | None:
    from .. import errors

    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__module__ == errors.__name__ and isinstance(cause, SemsearchError):
            return type(cause)(*cause.args)
        cause = getattr(cause, "cause", None) or cause.__cause__ or cause.__context__
    # Ray Data's UserCodeException arrives without its cause; the remote traceback in its text names it.
    found = re.findall(rf"^{re.escape(errors.__name__)}\.(\w+): (.+)$", str(exc), flags=re.MULTILINE)
    kind = getattr(errors, found[-1][0], None) if found else None
    if isinstance(kind, type) and issubclass(kind, SemsearchError):
        return kind(found[-1][1])
    # Files Arrow cannot parse (a short CSV row, Parquet files whose schemas conflict): the input's fault.
    found = re.findall(r"^(?:pyarrow\.lib\.)?(Arrow\w+Error|ArrowInvalid|UnicodeDecodeError): (.+)$", str(exc),
                       flags=re.MULTILINE)
    if found or type(exc).__name__.startswith("Arrow"):
        detail = found[-1][1] if found else str(exc).strip().splitlines()[-1]
        return BadInput(f"cannot read the corpus: {detail}")
    return None


def parquet_vectors(column, dim: int) -> np.ndarray:
    """A Parquet ``fixed_size_list<float>`` column as a float32 ``(n, dim)`` array."""
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def train_size(index: VectorIndex) -> int:
    """How many vectors to sample for training: :data:`TRAIN_SIZE`, or 40 per inverted list where that is
    more (FAISS's k-means wants at least 39 points per centroid).

    >>> train_size(VectorIndex.create(8, "IVF1024,Flat")), train_size(VectorIndex.create(8, "IVF65536,PQ4"))
    (100000, 2621440)
    """
    import faiss

    ivf = faiss.try_extract_index_ivf(index.faiss_index)
    return max(TRAIN_SIZE, 40 * ivf.nlist) if ivf is not None else TRAIN_SIZE


def ondisk_capable(index: VectorIndex) -> bool:
    """Whether ``merge_ondisk`` can take this index: IVF with plain (array) inverted lists, not IVFPQR."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index.faiss_index)
    return (ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists)
            and not isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQR))


def _mergeable(index: VectorIndex) -> bool:
    """Whether FAISS can merge two copies of this (trained, empty) index: asked of FAISS itself."""
    import faiss

    try:
        faiss.clone_index(index.faiss_index).merge_from(faiss.clone_index(index.faiss_index), 0)
    except RuntimeError:
        return False
    return True


#: Beside a Parquet part, the int64 vector-index id of each of its rows (``<part>.ids.npy``).
IDS_SUFFIX = ".ids.npy"


def shard_slices(rows: list[int], shards: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Split the rows of consecutive parts into ``shards`` contiguous, near-equal slices.

    Each slice is ``(first int id, [(part number, start row, stop row), …])``.

    >>> shard_slices([3, 3], 3)
    [(0, [(0, 0, 2)]), (2, [(0, 2, 3), (1, 0, 1)]), (4, [(1, 1, 3)])]
    """
    total = sum(rows)
    bounds = [round(total * s / shards) for s in range(shards + 1)]
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(int)
    slices = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        pieces = []
        for part, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
            a, b = max(lo, start), min(hi, stop)
            if a < b:
                pieces.append((part, int(a - start), int(b - start)))
        if pieces:
            slices.append((lo, pieces))
    return slices


def _add_shard(blob: np.ndarray, parts: list[str], pieces: list[tuple[int, int, int]], first_id: int, dim: int,
               out: str) -> int:
    """A Ray task: add one slice of the vectors to a copy of the trained empty index, write it to ``out``.
    Idempotent (temporary file, then rename), so Ray may rerun it."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.deserialize_index(blob)
    for vectors, ids in _sliceparquet_vectors(parts, pieces, first_id, dim):
        index.add_with_ids(vectors, ids)
    faiss.write_index(index, out + ".tmp")
    os.replace(out + ".tmp", out)
    return int(index.ntotal)


def build_sharded(ray, parts: list[Path], rows: list[int], factory: str, dim: int, sample: np.ndarray, shards: int,
                  tmp: Path, on_disk: bool, progress: bool) -> tuple[VectorIndex, int]:
    """The trained index filled with every vector (ids = row order), and the number of shards merged."""
    import faiss
    from tqdm.auto import tqdm

    index = VectorIndex.create(dim, factory)
    if not index.is_trained:
        log.info("training %s on %d of %d vectors", factory, len(sample), sum(rows))
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise BadInput(f"cannot train FAISS index {factory!r} on {len(sample)} vectors: "
                           f"{str(exc).strip().splitlines()[-1]}") from None
    slices = shard_slices(rows, shards)
    names = [str(p) for p in parts]
    if not _mergeable(index):  # HNSW: one graph, built on the driver
        log.info("%s cannot merge shards; adding %d vectors on the driver", factory, sum(rows))
        for first_id, pieces in slices:
            for vectors, ids in _sliceparquet_vectors(names, pieces, first_id, dim):
                index.add(vectors, ids)
        return index, 1
    serialized = faiss.serialize_index(index.faiss_index)
    # The merge target comes from the same bytes as the shards: FAISS merges only indexes of one C++ type,
    # and reading an index back can give a more general type than the factory made (IndexFlat for IndexFlatIP).
    index = VectorIndex(faiss.deserialize_index(serialized), factory)
    blob = ray.put(serialized)
    task = ray.remote(num_cpus=1, max_retries=RETRIES)(_add_shard)
    outputs = [str(tmp / f".shard-{i:05d}.faiss") for i in range(len(slices))]
    pending = [task.remote(blob, names, pieces, first_id, dim, out)
               for (first_id, pieces), out in zip(slices, outputs)]
    with tqdm(total=len(pending), unit="shard", desc="adding shards", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray_call(ray.get, done)
            bar.update(len(done))
    if on_disk:
        from faiss.contrib.ondisk import merge_ondisk

        with c_stdout_silenced():  # FAISS prints its file resizing on stdout
            merge_ondisk(index.faiss_index, outputs, str(tmp / IVFDATA_FILE))
        index.save(tmp / VECTORS_FILE)  # refers to vectors.ivfdata, found beside it when loaded
    else:
        for out in outputs:
            index.faiss_index.merge_from(faiss.read_index(out), 0)
    for out in outputs:
        os.unlink(out)
    if index.ntotal != sum(rows):
        raise SemsearchError(f"merged index holds {index.ntotal} vectors, the shards {sum(rows)}")
    return index, len(slices)


def _sliceparquet_vectors(parts: list[str], pieces, first_id: int, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(vectors, int ids)`` of one slice (see :func:`shard_slices`), a Parquet part at a time."""
    import pyarrow.parquet as pq

    next_id = first_id
    for part, start, stop in pieces:
        table = pq.read_table(parts[part], columns=["vector"]).slice(start, stop - start)
        vectors = parquet_vectors(table.column("vector"), dim)
        ids_file = Path(parts[part] + IDS_SUFFIX)  # passage ids, when the driver wrote them
        if ids_file.is_file():
            yield vectors, np.load(ids_file, allow_pickle=False)[start:stop]
        else:
            yield vectors, np.arange(next_id, next_id + len(vectors), dtype=np.int64)
        next_id += len(vectors)
