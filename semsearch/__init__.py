"""semsearch — semantic search and reranking on a plain CPU.

The pipeline: :class:`Embedder` turns documents into vectors, :class:`SearchEngine`
stores them in a FAISS index (plus a BM25 side) with the documents in SQLite and
searches them — dense, lexical or hybrid (:class:`Fusion`), with metadata filters — and a
:class:`Reranker` (a cross-encoder, which :func:`train_reranker` can make) reorders
the top candidates; :class:`ThresholdLabeler` and :class:`SetFitLabeler` turn scores
and texts into labels from a few examples, :class:`ZeroShotLabeler` from label descriptions alone.

>>> from semsearch import SearchEngine, read_corpus
>>> engine = SearchEngine.build(read_corpus("builtin:python-docs"), "indexes/python")  # doctest: +SKIP
>>> engine.search("parse a date from a string", k=3)[0].id                              # doctest: +SKIP
'_strptime...'

Nothing heavy runs at import: models load when an embedder is created.
"""

from .corpus.readers import read_corpus, read_qrels, read_queries
from .encode.embedder import Embedder
from .encode.models import DEFAULT_MODEL
from .encode.transformer import TransformerEmbedder
from .errors import (
                     BadInput,
                     IndexExists,
                     IndexLocked,
                     IndexNotFound,
                     ManifestMismatch,
                     ModelError,
                     SemsearchError,
                     StorageError,
)
from .index.engine import SearchEngine
from .index.fusion import Fusion
from .label.setfit import SetFitLabeler
from .label.threshold import ThresholdLabeler
from .label.zeroshot import ZeroShotLabeler
from .rerank.reranker import PairScores, Reranker
from .rerank.train import TrainingReport, train_reranker
from .types import Document, EvalResult, Hit, Passage
from .version import __version__

__all__ = [
    "__version__",
    "Document",
    "Hit",
    "Passage",
    "EvalResult",
    "Embedder",
    "TransformerEmbedder",
    "DEFAULT_MODEL",
    "SearchEngine",
    "Fusion",
    "Reranker",
    "PairScores",
    "train_reranker",
    "TrainingReport",
    "ThresholdLabeler",
    "SetFitLabeler",
    "ZeroShotLabeler",
    "read_corpus",
    "read_queries",
    "read_qrels",
    "SemsearchError",
    "BadInput",
    "IndexNotFound",
    "IndexExists",
    "IndexLocked",
    "ManifestMismatch",
    "ModelError",
    "StorageError",
]
