"""One bi-encoder shared by a served index's search worker and its writer, one batch at a time.

A Hugging Face fast tokenizer must not be called from two threads at once (its truncation and
padding state is changed per call), and two forward passes at once on 2 cores only slow each
other down. :class:`SharedEmbedder` wraps an embedder so each batch (and each length count) holds a
lock; a large add then takes turns with searches batch by batch instead of blocking them.

>>> from semsearch.encode.embedder import Embedder
>>> class Ones(Embedder):
...     dim = 2
...     def embed_batch(self, texts):
...         return np.ones((len(texts), 2), dtype=np.float32)
...     def config(self):
...         return {"kind": "ones", "dim": 2, "normalize": True}
>>> SharedEmbedder(Ones()).encode(["a", "b"]).shape
(2, 2)
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from ..encode.embedder import Embedder

__all__ = ["SharedEmbedder"]


class SharedEmbedder(Embedder):
    """``inner`` behind a lock: same vectors, same ``config()``, one batch at a time."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.dim, self.normalize = inner.dim, inner.normalize
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.inner.embed_batch(texts)

    def lengths(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return self.inner.lengths(texts)

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def cache_keys(self, texts: Sequence[str]) -> list[str]:
        return self.inner.cache_keys(texts)

    def tokenizer_json(self) -> str | None:
        return self.inner.tokenizer_json()

    @property
    def truncated(self) -> int:
        return self.inner.truncated

    @property
    def max_length(self) -> int | None:
        return getattr(self.inner, "max_length", None)

    def __getattr__(self, name: str):  # anything else (e.g. ``model``) from the wrapped embedder
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
