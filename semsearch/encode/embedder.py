"""Stage 1a — the bi-encoder's interface: texts in, float32 vectors out.

:class:`Embedder` has one abstract method, :meth:`Embedder.embed_batch`; batching by length, order
restoration, normalisation and checks are built on it in :meth:`Embedder.encode`. Any Hugging Face
encoder: :class:`~semsearch.encode.transformer.TransformerEmbedder`; a deterministic fake for tests is
a dozen lines (see ``tests/fakes.py``).

>>> class Letters(Embedder):
...     dim = 2
...     def embed_batch(self, texts):
...         return np.array([[t.count("a"), t.count("b")] for t in texts], dtype=np.float32)
...     def config(self):
...         return {"kind": "letters", "dim": 2, "normalize": True}
>>> [[round(float(x), 3) for x in row] for row in Letters().encode(["aab", "b"])]
[[0.894, 0.447], [0.0, 1.0]]
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ManifestMismatch, ModelError
from .batching import check_batch_size, run_sorted
from .precision import same_vectors, vector_kind

__all__ = ["Embedder", "check_same_embedder"]

log = logging.getLogger(__name__)

_SHORT = 256  # characters: a text this short cannot need truncating, so one alone skips the length pass


class Embedder(ABC):
    """A bi-encoder. Subclasses implement :meth:`embed_batch` and set ``dim``.

    ``config()`` is the embedder's identity; it is stored in an index's
    manifest and compared when the index is opened again.
    """

    dim: int
    normalize: bool = True
    truncated: int = 0  # texts cut to the model's max length so far (counted by ``lengths``)

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch; return an array of shape ``(len(texts), dim)`` (not normalised)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description; must contain ``kind``, ``dim`` and ``normalize``."""

    def cache_keys(self, texts: Sequence[str]) -> list[str]:
        """Embedding-cache keys: SHA-256 of this embedder's identity (``config()``: model weights,
        pooling, precision, …) and each text. Equal keys mean equal vectors."""
        identity = json.dumps(self.config(), sort_keys=True, default=str).encode()
        base = hashlib.sha256(identity + b"\0")
        keys = []
        for text in texts:
            h = base.copy()
            h.update(text.encode("utf-8", "surrogatepass"))
            keys.append(h.hexdigest())
        return keys

    def _checked_batch(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.embed_batch(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ModelError(f"embedder returned shape {vectors.shape}, expected {(len(texts), self.dim)}")
        return vectors

    def report_truncated(self, since: int, total: int) -> None:
        """One warning for a whole job: how many of its ``total`` texts were cut (``since``: the count before)."""
        cut = self.truncated - since
        if cut:
            log.warning("%d of %d texts were longer than %d tokens; the model read their first %d", cut, total,
                        getattr(self, "max_length", 0), getattr(self, "max_length", 0))

    def tokenizer_json(self) -> str | None:
        """The model's tokenizer as ``tokenizer.json`` text, used to cut long documents into passages that
        fit; ``None`` (the default) when there is none, and passages are then counted in words."""
        return None

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Cost of each text, used to group similar lengths into a batch. Default: characters."""
        return [len(t) for t in texts]

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches of similar length; return float32 ``(n, dim)`` in input order.

        Vectors are L2-normalised when ``self.normalize`` is true. ``on_batch`` is
        called with the size of each finished batch (for progress bars).
        """
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        check_batch_size(batch_size)
        if len(texts) == 1 and len(texts[0]) <= _SHORT:  # the warm path of one short query: no length pass
            out = self._checked_batch(texts)
            if on_batch is not None:
                on_batch(1)
        else:
            out = run_sorted(texts, self.lengths(texts), batch_size, self._checked_batch, on_batch)
        if not np.isfinite(out).all():
            raise ModelError("the model produced NaN or infinite values; its weights may be broken")
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out


def check_same_embedder(built: dict[str, Any], used: dict[str, Any]) -> None:
    """Raise :class:`ManifestMismatch` unless ``used`` produces vectors comparable to ``built``'s."""
    if built.get("kind") != used.get("kind"):
        raise ManifestMismatch(f"index was built with a {built.get('kind')!r} embedder, not {used.get('kind')!r}")
    h_built, h_used = built.get("weights_sha256"), used.get("weights_sha256")
    if h_built and h_used and h_built != h_used:
        if built.get("model") == used.get("model"):
            raise ManifestMismatch(f"the weights of model {built.get('model')!r} changed since the index was built")
        raise ManifestMismatch(f"index was built with model {built.get('model')!r}, not {used.get('model')!r}")
    if not (h_built and h_used) and built.get("model") != used.get("model"):
        raise ManifestMismatch(f"index was built with model {built.get('model')!r}, not {used.get('model')!r}")
    for key in ("pooling", "normalize", "dim"):
        if built.get(key) != used.get(key):
            raise ManifestMismatch(f"index was built with {key}={built.get(key)!r}, not {used.get(key)!r}")
    k_built = vector_kind(built.get("precision", "fp32"), built.get("backend", "torch"))
    k_used = vector_kind(used.get("precision", "fp32"), used.get("backend", "torch"))
    if not same_vectors(k_built, k_used):
        hint = f"precision {built.get('precision', 'fp32')!r}" + (
            f" and backend {built.get('backend')!r}" if k_built != built.get("precision", "fp32") else "")
        raise ManifestMismatch(f"index was built with {k_built} vectors; they do not mix with {k_used} ones "
                               f"(pass {hint}, or rebuild the index)")
