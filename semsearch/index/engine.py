"""The search engine: composes embedder → vector index → document store into one index folder.

>>> from semsearch import SearchEngine, read_corpus
>>> engine = SearchEngine.build(read_corpus("docs.jsonl"), "indexes/docs")   # doctest: +SKIP
>>> engine = SearchEngine.open("indexes/docs")                               # doctest: +SKIP
>>> for hit in engine.search("how do cells divide?", k=3):                   # doctest: +SKIP
...     print(hit.rank, round(hit.score, 3), hit.id, hit.title)

An index folder holds ``manifest.json`` (written last), ``vectors.faiss``,
``docs.sqlite`` and, unless built without it, ``lexical/`` (BM25). It is built in a
temporary sibling folder and renamed into place, so an interrupted or failed build
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..encode.batching import check_batch_size
from ..encode.embedder import Embedder, check_same_embedder
from ..encode.transformer import TransformerEmbedder, embedder_loader
from ..errors import BadInput, IndexNotFound, ManifestMismatch
from ..metrics import evaluate_run, judged_queries
from ..rerank.blend import check_candidates, tune_rerank_weight
from ..rerank.reranker import Reranker
from ..types import Document, EvalResult, Hit
from .build import build_index
from .filters import Filter, parse_filters
from .fusion import FUSION_DEPTH, Fusion
from .info import describe
from .layout import (
    DOCS_FILE,
    LEXICAL_DIR,
    VECTORS_FILE,
    check_target,
    storage_errors,
    writer_lock,
)
from .lexical import LexicalIndex
from .manifest import Manifest
from .maxp import best_passages, maxp_lexical, maxp_search
from .passages import PassageSplitter
from .store import DocStore
from .tune import tune_fusion
from .update import (
    AddReport,
    CompactReport,
    DeleteReport,
    add_documents,
    apply_changes,
    compact,
    delete_documents,
    lexical_from_texts,
    read_changes,
    update_manifest,
)
from .vectors import VectorIndex

__all__ = ["SearchEngine", "MODES"]

log = logging.getLogger(__name__)

#: Search modes: the bi-encoder alone, BM25 alone, or both fused.
MODES = ("dense", "lexical", "hybrid")


class SearchEngine:
    """A built index, ready to search. Make one with :meth:`build` or :meth:`open`."""

    def __init__(self, path: Path, manifest: Manifest, embedder: Embedder | Callable[[], Embedder], index: VectorIndex,
                 store: DocStore, lexical: LexicalIndex | None = None):
        self.path, self.manifest = path, manifest
        self._embedder, self._load_embedder = (embedder, None) if isinstance(embedder, Embedder) else (None, embedder)
        self.index, self.store, self.lexical = index, store, lexical
        self.generation = manifest.generation  # the store generation the in-memory index reflects
        #: whether models recorded with trust_remote_code may load (:meth:`open`; a build trusts what it was given)
        self.trust_remote_code = bool(manifest.embedder.get("trust_remote_code"))

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        path: str | os.PathLike,
        *,
        embedder: Embedder | None = None,
        factory: str | None = None,
        batch_size: int = 32,
        lexical: bool = True,
        overwrite: bool = False,
        progress: bool = True,
        passages: str = "auto",
        passage_tokens: int | None = None,
        passage_overlap: int | None = None,
        lexical_unit: str = "document",
    ) -> "SearchEngine":
        """Embed ``documents`` and write a new index folder at ``path``.

        ``embedder`` defaults to :class:`TransformerEmbedder` with the embedded
        all-MiniLM-L6-v2. ``factory`` is a FAISS factory string; ``None`` picks
        ``Flat`` up to 200k documents and ``HNSW32`` above. An existing index at
        ``path`` is replaced only with ``overwrite=True``; a folder that is not an
        index is never replaced. ``lexical=False`` leaves out the BM25 side (dense search only).

        ``passages="auto"`` splits documents longer than ``passage_tokens`` (default: the embedder's max
        length) into passages of at most that many tokens, title included, ``passage_overlap`` tokens
        shared by neighbours (default 32); each passage gets its own vector and a document is scored
        by its best one. ``"off"``: one vector per document (the model reads its start).
        ``lexical_unit``: BM25 over whole documents (``"document"``) or over passages (``"passage"``).

        >>> SearchEngine.build(read_corpus("notes/"), "indexes/notes", passage_tokens=128)  # doctest: +SKIP
        """
        path = Path(path)
        check_target(path, overwrite)
        check_batch_size(batch_size)
        embedder = embedder or TransformerEmbedder()
        splitter = PassageSplitter(embedder, mode=passages, tokens=passage_tokens, overlap=passage_overlap)
        with storage_errors(path, "nothing was written there (the previous index, if any, is unchanged)"), \
                writer_lock(path):
            manifest, index, lexical_index = build_index(documents, path, embedder, factory=factory,
                                                         batch_size=batch_size, lexical=lexical, overwrite=overwrite,
                                                         progress=progress, splitter=splitter,
                                                         lexical_unit=lexical_unit)
        return cls(path, manifest, embedder, index, DocStore(path / DOCS_FILE), lexical_index)

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, embedder: Embedder | None = None, precision: str | None = None,
             backend: str | None = None, lazy: bool = False, trust_remote_code: bool = False) -> "SearchEngine":
        """Open an index folder. Without ``embedder`` the one recorded in the manifest is loaded,
        at the recorded precision unless ``precision``/``backend`` say otherwise; with one, it must
        match the manifest (model weights, pooling, normalisation, dimension, a precision whose
        vectors mix) or :class:`~semsearch.errors.ManifestMismatch` is raised. With ``lazy``, the
        recorded embedder loads when something first needs it (a dense search, an add): deleting,
        compacting and lexical search then load no model. A model recorded with ``trust_remote_code`` (the
        embedder, the default reranker) loads only if ``trust_remote_code`` is given here too."""
        path = Path(path)
        manifest = Manifest.load(path)
        if embedder is not None and (precision or backend):
            raise BadInput("give either an embedder or a precision/backend, not both")
        if embedder is None:
            embedder = embedder_loader(manifest.embedder, precision, backend, trust_remote_code=trust_remote_code)
            if not lazy:
                embedder = embedder()
        else:
            check_same_embedder(manifest.embedder, embedder.config())
        index = VectorIndex.load(path / VECTORS_FILE, manifest.factory)
        store = DocStore(path / DOCS_FILE)
        if index.dim != manifest.dim:
            raise ManifestMismatch(f"vector file has dimension {index.dim}, manifest says {manifest.dim}")
        lexical = _load_lexical(path) if manifest.lexical else None
        if store.id_bits != int((manifest.passages or {}).get("id_bits", 0)):
            raise ManifestMismatch(f"index at {path} is inconsistent: its manifest and document store disagree on "
                                   "passage ids")
        changes = texts = None
        unit = (manifest.lexical or {}).get("unit", "document")
        with store.snapshot():  # one consistent state of the store; only reads here, so writers wait briefly
            generation, stored, passages = store.generation, len(store), store.passage_count()
            if generation != manifest.generation:  # a write is under way, or one was interrupted
                changes = read_changes(index, store, manifest.generation)
            if manifest.lexical and (lexical is None or lexical.generation != generation):
                texts = store.texts(unit)
        if changes is not None:
            log.warning("index %s: the document store is at generation %d, its files at %d (a write is under way "
                        "or was interrupted); applying the difference in memory", path, generation,
                        manifest.generation)
            index = apply_changes(index, changes)
            manifest = dataclasses.replace(manifest, documents=stored,  # in memory; the file keeps its state
                                           vectors=passages if manifest.vectors is not None else None)
        elif stored != manifest.documents:
            raise ManifestMismatch(f"index at {path} is inconsistent: manifest lists {manifest.documents} "
                                   f"documents, document store {path / DOCS_FILE} has {stored}")
        elif index.ntotal != manifest.vector_count:
            raise ManifestMismatch(f"index at {path} is inconsistent: manifest lists {manifest.vector_count} "
                                   f"passages, vector file {path / VECTORS_FILE} has {index.ntotal}")
        if passages != index.ntotal:
            raise ManifestMismatch(f"index at {path} is inconsistent: document store {path / DOCS_FILE} has "
                                   f"{passages} passages, vector file {path / VECTORS_FILE} has {index.ntotal}")
        if texts is not None:
            lexical = lexical_from_texts(*texts, lexical.config if lexical else manifest.lexical, generation)
        entries = passages if unit == "passage" else stored
        if lexical is not None and len(lexical) != entries:
            raise ManifestMismatch(f"index at {path} is inconsistent: document store has {entries} {unit}s, "
                                   f"lexical index {path / LEXICAL_DIR} has {len(lexical)}")
        engine = cls(path, manifest, embedder, index, store, lexical)
        engine.generation, engine.trust_remote_code = generation, trust_remote_code
        return engine

    def _in_index(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` that the in-memory vector index holds (the store may have moved on since it was opened)."""
        cached = getattr(self, "_ids_of", None)
        if cached is None or cached[0] is not self.index or cached[1] != self.index.ntotal:
            self._ids_of = (self.index, self.index.ntotal)
            self._ids = np.sort(self.index.ids())
        return ids[np.isin(ids, self._ids, assume_unique=True)]

    def reload(self) -> None:
        """Read the index folder again (after another process wrote to it)."""
        fresh = type(self).open(self.path, embedder=self._embedder, lazy=True)
        self.store.close()
        self.manifest, self.index, self.store, self.lexical = fresh.manifest, fresh.index, fresh.store, fresh.lexical
        self.generation = fresh.generation

    @property
    def embedder(self) -> Embedder:
        """The bi-encoder the index was built with (loaded now if the engine was opened ``lazy``)."""
        if self._embedder is None:
            self._embedder = self._load_embedder()
        return self._embedder

    @property
    def splitter(self) -> PassageSplitter:
        """How this index cuts documents into passages (as it was built; documents added later are cut alike)."""
        if getattr(self, "_splitter", None) is None or self._splitter[0] != self.manifest.passages:
            self._splitter = (self.manifest.passages, PassageSplitter.from_config(self.embedder, self.manifest.passages))
        return self._splitter[1]

    # --- changing ---------------------------------------------------------------------------

    def add(self, documents: Iterable[Document], *, batch_size: int = 32, progress: bool = True,
            on_commit=None, commit_every: int = 256) -> "AddReport":
        """Insert new documents and update existing ones (same id); see :func:`semsearch.index.update.add_documents`.

        >>> engine.add([Document("d9", "a new text")]).added       # doctest: +SKIP
        1
        """
        return add_documents(self, documents, batch_size=batch_size, progress=progress, on_commit=on_commit,
                             commit_every=commit_every)

    def delete(self, ids: Sequence[str]) -> "DeleteReport":
        """Delete documents by id (all must exist); see :func:`semsearch.index.update.delete_documents`."""
        return delete_documents(self, ids)

    def compact(self) -> "CompactReport":
        """Rebuild the derived files from the store and reclaim deleted documents' space."""
        return compact(self)

    # --- searching -------------------------------------------------------------------------

    @property
    def default_mode(self) -> str:
        """``"hybrid"`` when the index has a lexical side, else ``"dense"``."""
        return "hybrid" if self.lexical is not None else "dense"

    @property
    def fusion(self) -> Fusion:
        """The fusion a hybrid search uses: the one stored by :meth:`tune_fusion`, else plain RRF."""
        return Fusion.from_dict(self.manifest.fusion)

    def search(self, query: str, k: int = 10, *, mode: str | None = None,
               filters: Sequence[str | Filter] | None = None, reranker: Reranker | None = None,
               candidates: int = 50) -> list[Hit]:
        """The ``k`` best documents for one query, best first (see :meth:`search_many`)."""
        return self.search_many([query], k, mode=mode, filters=filters, reranker=reranker, candidates=candidates)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: str | None = None,
        filters: Sequence[str | Filter] | None = None,
        reranker: Reranker | None = None,
        candidates: int = 50,
        batch_size: int = 32,
        vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Search several queries at once (encoded together); one hit list per query.

        ``mode``: ``"dense"``, ``"lexical"`` or ``"hybrid"`` (default :attr:`default_mode`).
        ``filters`` (e.g. ``["year>=2020", "lang in en,de"]``, see :mod:`semsearch.index.filters`)
        select documents by metadata before ranking, so ``k`` hits come back whenever at least
        ``k`` documents match (in lexical mode: at least ``k`` that share a word with the query).
        With a ``reranker``, the first stage's top ``candidates`` hits of every query are scored
        together by the cross-encoder and the best ``k`` are returned.

        ``vectors``: the queries' vectors when the caller encoded them already (a server that encodes
        the queries of many requests in one batch); rows in query order, from this index's embedder.

        >>> engine.search_many(["cell division"], k=3, mode="hybrid", filters=["year>=2020"])  # doctest: +SKIP
        """
        queries = list(queries)
        _check_queries(queries, k)
        mode = self.check_mode(mode)
        if reranker is not None:
            check_candidates(k, candidates)
        allowed = self.store.select(parse_filters(filters)) if filters else None
        if not queries:
            return []
        first = self.first_stage(queries, candidates if reranker is not None else k, mode, allowed, batch_size,
                                 vectors)
        return reranker.rerank(queries, first, k) if reranker is not None else first

    def check_mode(self, mode: str | None) -> str:
        """The search mode to run: ``mode``, or this index's default; :class:`BadInput` for one it cannot run."""
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise BadInput(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}")
        if mode != "dense" and self.lexical is None:
            raise BadInput(f"mode {mode!r} needs a lexical side, and index {self.path} was built without one "
                           "(--no-lexical); rebuild it, or use --mode dense")
        return mode

    def first_stage(self, queries: list[str], k: int, mode: str, allowed: np.ndarray | None = None,
                    batch_size: int = 32, vectors: np.ndarray | None = None) -> list[list[Hit]]:
        """Top ``k`` documents per query from the dense, lexical or hybrid first stage (no reranking), each
        hit with its best passages. ``allowed``: the document int ids to search among (a filter);
        ``vectors``: the queries' vectors, if already encoded."""
        _check_queries(queries, k)
        mode = self.check_mode(mode)
        if mode == "lexical":
            vectors = None
        elif vectors is None:
            vectors = self.embedder.encode(queries, batch_size)
        elif vectors.shape != (len(queries), self.manifest.dim):
            raise BadInput(f"expected query vectors of shape {(len(queries), self.manifest.dim)}, got {vectors.shape}")
        depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
        dense = self._dense(vectors, depth, allowed) if vectors is not None else None
        lexical = self.lexical_rankings(queries, depth, allowed) if mode != "dense" else None
        if mode == "hybrid":
            fusion = self.fusion
            rankings = [fusion.fuse(d, lx) for d, lx in zip(dense, lexical)]
        else:
            rankings = dense if mode == "dense" else lexical
        return self._hits(rankings, k, queries, vectors)

    def dense_rankings(self, queries: list[str], k: int, allowed: np.ndarray | None,
                       batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The bi-encoder's top ``k`` documents per query (MaxP over passages) as ``(int ids, scores)``."""
        return self._dense(self.embedder.encode(queries, batch_size), k, allowed)

    def lexical_rankings(self, queries: list[str], k: int, allowed: np.ndarray | None
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
        """BM25's top ``k`` documents per query as ``(int ids, scores)`` (a document indexed by passages
        scores its best passage's)."""
        if self.lexical.unit != "passage":
            return self.lexical.search(queries, k, allowed)
        return maxp_lexical(self.lexical, queries, k, self._passages_of(allowed), self.store.id_bits)

    def _dense(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        documents = len(self.store) if allowed is None else len(allowed)
        return maxp_search(self.index, vectors, k, self._passages_of(allowed, in_index=True), self.store.id_bits,
                           documents)

    def _passages_of(self, allowed: np.ndarray | None, in_index: bool = False) -> np.ndarray | None:
        """The passage ids of the ``allowed`` documents (those the in-memory vector index holds)."""
        if allowed is None:
            return None
        ids = allowed if self.store.id_bits == 0 else np.sort(np.array(self.store.passage_ids(allowed), np.int64))
        return self._in_index(ids) if in_index else ids

    def _hits(self, rankings: list[tuple[np.ndarray, np.ndarray]], k: int, queries: list[str],
              vectors: np.ndarray | None) -> list[list[Hit]]:
        rankings = [(ids[:k], scores[:k]) for ids, scores in rankings]
        flat = [int(i) for ids, _ in rankings for i in ids]
        docs = self.store.get(flat)
        best = best_passages(self.store, [ids for ids, _ in rankings], queries, vectors,
                             held=self.index.held_vectors)
        results, taken = [], 0
        for (ids, scores), chosen in zip(rankings, best):
            hits = []
            for int_id, score in zip(ids, scores):
                doc = docs[taken]
                taken += 1
                if doc is None:  # deleted by a writer since this engine was opened
                    continue
                hits.append(Hit(doc.id, float(score), len(hits) + 1, doc.text, doc.title, doc.metadata,
                                passages=chosen.get(int(int_id), ())))
            results.append(hits)
        return results

    def evaluate(
        self,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        mode: str | None = None,
        reranker: Reranker | None = None,
        candidates: int = 50,
        batch_size: int = 32,
    ) -> EvalResult:
        """nDCG@10, MRR@10, Recall@100 and MAP@100 of this index on judged queries.

        Only queries that appear in ``qrels`` are run; every one of them must be in ``queries``.
        With a ``reranker`` the top ``candidates`` are reranked and the rest of the first
        stage's top 100 follows them unchanged, so Recall@100 stays comparable.
        """
        qids, texts = judged_queries(queries, qrels)
        mode = self.check_mode(mode)
        depth = max(100, candidates) if reranker is not None else 100
        hits = self.first_stage(texts, depth, mode, None, batch_size)
        if reranker is not None:
            check_candidates(1, candidates)
            top = reranker.rerank(texts, [hs[:candidates] for hs in hits], candidates)
            hits = [t + hs[candidates:] for t, hs in zip(top, hits)]
        return evaluate_run({q: [h.id for h in hs[:100]] for q, hs in zip(qids, hits)}, qrels)

    def tune_fusion(self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], **options) -> Fusion:
        """Pick the hybrid fusion with the best nDCG@10 on judged queries and store it;
        ``options`` and details: :func:`semsearch.index.tune.tune_fusion`."""
        return tune_fusion(self, queries, qrels, **options)

    def tune_rerank_weight(self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                           reranker: Reranker, **options) -> Reranker:
        """Fit ``reranker``'s first-stage blend weight for this index and make it the default;
        ``options`` and details: :func:`semsearch.rerank.blend.tune_rerank_weight`."""
        return tune_rerank_weight(self, queries, qrels, reranker, **options)

    def set_fusion(self, fusion: Fusion | None) -> None:
        """Store ``fusion`` in the manifest (``None``: back to plain RRF)."""
        update_manifest(self, fusion=fusion.to_dict() if fusion else None)

    # --- the default reranker ---------------------------------------------------------------

    def default_reranker(self, max_length: int | None = None, *, precision: str | None = None,
                         backend: str | None = None) -> Reranker | None:
        """The reranker recorded in the manifest, loaded (``max_length`` overrides the recorded one)
        and run at ``precision`` (default: the recorded one); ``None`` if the index has none."""
        if not self.manifest.reranker:
            return None
        config = dict(self.manifest.reranker, **({"max_length": max_length} if max_length else {}))
        reranker = Reranker.from_config(config, precision=precision, backend=backend,
                                        trust_remote_code=self.trust_remote_code)
        recorded = self.manifest.reranker.get("weights_sha256")
        if recorded and reranker.weights_sha256 and recorded != reranker.weights_sha256:
            log.warning("the weights of reranker %s changed since it was set as this index's default; "
                        "thresholds fitted on its old scores may not hold", reranker.name)
        return reranker

    def set_default_reranker(self, reranker: Reranker | None) -> None:
        """Record ``reranker`` (or none) in the manifest, so ``semsearch query --rerank`` needs no model name."""
        update_manifest(self, reranker=reranker.config() if reranker else None)

    # --- housekeeping ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Documents in the index."""
        return self.manifest.documents

    def info(self) -> dict:
        """The manifest plus what is on disk now: counts and size in bytes."""
        return describe(self.path)

    def close(self) -> None:
        """Close the document store (also on leaving a ``with`` block)."""
        self.store.close()

    def __enter__(self) -> "SearchEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SearchEngine({str(self.path)!r}, documents={len(self)}, factory={self.index.factory!r})"


def _load_lexical(path: Path) -> LexicalIndex | None:
    """The BM25 side from its files; ``None`` (rebuilt from the store by the caller) when they are missing or
    damaged: a writer swapping them in, one killed while doing so, or a broken disk."""
    try:
        return LexicalIndex.load(path / LEXICAL_DIR)
    except (IndexNotFound, ManifestMismatch) as exc:
        log.warning("%s; rebuilding the BM25 side from the document store", exc)
        return None


def _check_queries(queries: list[str], k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BadInput(f"k must be a positive integer, got {k!r}")
    for q in queries:
        if not isinstance(q, str) or not q.strip():
            raise BadInput(f"a query must be non-empty text, got {q!r}")
