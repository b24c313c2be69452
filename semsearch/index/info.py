"""What ``semsearch info`` prints about an index: its manifest, counts, size on disk, and its models' checks.

>>> describe("indexes/scifact")["documents"]            # doctest: +SKIP
5183
"""

from __future__ import annotations

import os
from pathlib import Path

from ..encode.transformer import stored_agreement
from ..rerank.reranker import stored_agreement as reranker_agreement
from .layout import DOCS_FILE, VECTORS_FILE, folder_size
from .manifest import Manifest
from .store import DocStore
from .vectors import VectorIndex

__all__ = ["describe"]


def describe(path: str | os.PathLike) -> dict:
    """The manifest of the index at ``path`` plus counts, size on disk, and how its embedder's and default
    reranker's precisions agreed with fp32 on this CPU (:mod:`semsearch.encode.agreement`); loads no model."""
    path = Path(path)
    manifest = Manifest.load(path)
    with DocStore(path / DOCS_FILE) as store:
        stored = len(store)
    checks = {"embedder": stored_agreement(manifest.embedder)}
    if manifest.reranker:
        checks["reranker"] = reranker_agreement(manifest.reranker)
    return {
        **manifest.to_dict(),
        "path": str(path),
        "vectors": VectorIndex.load(path / VECTORS_FILE, manifest.factory).ntotal,
        "stored_documents": stored,
        "size_bytes": folder_size(path),
        "agreement": {k: v for k, v in checks.items() if v is not None},
    }
