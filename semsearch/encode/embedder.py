"""Stage 1a — the bi-encoder: texts in, float32 vectors out.

:class:`Embedder` has one abstract method, :meth:`Embedder.embed_batch`; batching
by length, order restoration, normalisation and checks are built on it in
:meth:`Embedder.encode`. :class:`TransformerEmbedder` implements it for any
Hugging Face encoder.

>>> emb = TransformerEmbedder()                      # the embedded all-MiniLM-L6-v2
>>> emb.encode(["a cat", "a dog"]).shape             # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadInput, ManifestMismatch, ModelError
from .batching import run_sorted
from .models import DEFAULT_MODEL, load_pretrained, model_folder, model_name, weights_sha256
from .pooling import check_pooling, pool, pool_arrays
from .runtime import autocast, fill_in, model_runner, resolve_precision, runnable_here, same_vectors, vector_kind

__all__ = ["Embedder", "TransformerEmbedder", "DEFAULT_MODEL", "embedder_from_config", "check_same_embedder"]

log = logging.getLogger(__name__)


_SHORT = 256  # characters: a text this short cannot need truncating, so one alone skips the length pass
_CHARS_PER_TOKEN = 64  # texts are clipped to max_length × this many characters before tokenising


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
        if batch_size < 1:
            raise BadInput(f"batch size must be at least 1, got {batch_size}")
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


class TransformerEmbedder(Embedder):
    """Any Hugging Face encoder, loaded with ``AutoTokenizer``/``AutoModel``.

    Args:
        model: local folder or hub id; ``None`` means :data:`DEFAULT_MODEL` (embedded, offline).
        pooling: ``"mean"``, ``"cls"`` or ``"pooler"``. ``None``: the model's own
            sentence-transformers config if it has one, else ``"mean"``.
        normalize: L2-normalise vectors (default on; the index uses inner product).
        max_length: tokens per text; ``None``: the sentence-transformers config, else
            the model's limit (at most 512).
        trust_remote_code: run code shipped with a hub model. Off unless you ask.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"`` (bf16 where the CPU has it, else fp32);
            see :mod:`semsearch.encode.runtime`.
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime), ``"openvino"`` (OpenVINO; its int8 is static, faster and
            closer to fp32) or ``"auto"`` (torch; onnx for int8).

    >>> TransformerEmbedder(pooling="max")
    Traceback (most recent call last):
    semsearch.errors.BadInput: unknown pooling 'max'; valid values are: mean, cls, pooler
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        normalize: bool = True,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        device: str = "cpu",
        precision: str = "auto",
        backend: str = "auto",
    ):
        if pooling is not None:
            check_pooling(pooling)
        self.precision, self.backend = resolve_precision(precision, backend)
        if max_length is not None and max_length < 1:
            raise BadInput(f"max length must be at least 1, got {max_length}")
        self.name = model_name(model)
        folder = model_folder(self.name)
        st = _sentence_transformers_defaults(folder, self.name)
        if pooling is None and st.get("unsupported_pooling"):
            raise ModelError(
                f"model {self.name!r} uses sentence-transformers pooling {st['unsupported_pooling']}, which "
                "semsearch does not implement; pass pooling 'mean', 'cls' or 'pooler' explicitly"
            )
        self.pooling = pooling or st.get("pooling") or "mean"
        source = st.get("transformer_path") or str(folder)
        self.tokenizer, self.model, missing = _load(source, self.name, trust_remote_code, cache=device == "cpu")
        self.model.to(device)
        if self.pooling == "pooler":
            if getattr(self.model, "pooler", None) is None:
                raise ModelError(f"model {self.name!r} has no pooler layer; use pooling 'cls' or 'mean'")
            if any("pooler." in key for key in missing):
                raise ModelError(
                    f"model {self.name!r} has no trained pooler weights (they would be random); "
                    "use pooling 'cls' or 'mean'"
                )
        self.normalize = bool(normalize)
        limit = min(
            getattr(self.model.config, "max_position_embeddings", 512) or 512,
            int(min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512)),
        )
        self.max_length = int(max_length or st.get("max_length") or limit)
        self.dim = int(self.model.config.hidden_size)
        self.device = device
        self.trust_remote_code = bool(trust_remote_code)
        self.weights_sha256 = weights_sha256(source)
        self._runner = None  # the exported model on ONNX Runtime or OpenVINO
        if self.backend != "torch":
            self._runner = model_runner(self.model, self.tokenizer, task="encoder", precision=self.precision,
                                        backend=self.backend, weights_sha256=self.weights_sha256, name=self.name,
                                        max_length=self.max_length)

    def config(self) -> dict[str, Any]:
        return {
            "kind": "transformers",
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "dim": self.dim,
            "trust_remote_code": self.trust_remote_code,
            "precision": self.precision,
            "backend": self.backend,
        }

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (at most ``max_length``): batches are formed from texts of similar token count.
        Texts longer than ``max_length`` tokens are counted and logged: the model reads only their start."""
        enc = self.tokenizer(self._clip(texts), truncation=False, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)
        counts = [len(ids) for ids in enc["input_ids"]]
        cut = sum(c > self.max_length for c in counts)
        self.truncated = getattr(self, "truncated", 0) + cut  # a running count: callers report it once per job
        if cut:
            log.info("%d of %d texts were longer than %d tokens; the model reads their first %d", cut, len(counts),
                     self.max_length, self.max_length)
        return [min(c, self.max_length) for c in counts]

    def _clip(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to ``max_length × 64`` characters: a 10 MB document costs no more than a long one
        (the model reads at most ``max_length`` tokens, which never take that many characters)."""
        limit = self.max_length * _CHARS_PER_TOKEN
        return [t if len(t) <= limit else t[:limit] for t in texts]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        texts = self._clip(texts)
        if self._runner is not None:  # numpy only: torch's threads would compete with the runtime's
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="np")
            return pool_arrays(self.pooling, self._runner(enc), enc["attention_mask"])
        import torch

        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode(), autocast(self.precision):
            out = self.model(**enc)
            vectors = pool(self.pooling, out, enc["attention_mask"])
        return vectors.float().cpu().numpy()


def embedder_from_config(config: dict[str, Any], precision: str | None = None,
                         backend: str | None = None) -> Embedder:
    """Rebuild the embedder an index was built with, from its manifest entry.

    ``precision``/``backend`` default to the recorded ones. Where the recorded one cannot run
    here, a precision whose vectors mix with it is used instead (bf16 without native bf16 → fp32,
    ONNX fp32 without ONNX Runtime → torch fp32), with a warning.
    """
    if config.get("kind") != "transformers":
        raise ManifestMismatch(
            f"the index was built with a custom embedder of kind {config.get('kind')!r}; "
            "pass that embedder when opening it"
        )
    if precision is None and backend is None:
        precision, backend = runnable_here(config.get("precision", "fp32"), config.get("backend", "torch"),
                                           "the index's embedder")
    else:
        precision, backend = fill_in((config.get("precision", "fp32"), config.get("backend", "torch")),
                                     precision, backend)
        resolved = resolve_precision(precision, backend)
        check_same_embedder(config, {**config, "precision": resolved[0], "backend": resolved[1]})
    embedder = TransformerEmbedder(
        config["model"],
        pooling=config["pooling"],
        normalize=config["normalize"],
        max_length=config["max_length"],
        trust_remote_code=config.get("trust_remote_code", False),
        precision=precision,
        backend=backend,
    )
    check_same_embedder(config, embedder.config())
    return embedder


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


# --- loading helpers -------------------------------------------------------------------------


def _sentence_transformers_defaults(folder: Path, name: str) -> dict[str, Any]:
    """Pooling, max length and transformer sub-folder from a sentence-transformers model, if it is one."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {name!r} has an unreadable modules.json: {exc}") from exc
    found: dict[str, Any] = {}
    for module in modules:
        kind, sub = module.get("type", ""), module.get("path", "")
        if kind.endswith(".Transformer"):
            if sub:
                found["transformer_path"] = str(folder / sub)
            cfg = folder / sub / "sentence_bert_config.json"
            if cfg.is_file():
                found["max_length"] = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
        elif kind.endswith(".Pooling"):
            cfg_file = folder / sub / "config.json"
            cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if sub and cfg_file.is_file() else {}
            if cfg.get("pooling_mode_cls_token"):
                found["pooling"] = "cls"
            elif cfg.get("pooling_mode_mean_tokens"):
                found["pooling"] = "mean"
            else:
                found["unsupported_pooling"] = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
    return found


def _load(source: str, name: str, trust_remote_code: bool, cache: bool):
    tokenizer, model, missing = load_pretrained("AutoModel", source, name, trust_remote_code, cache=cache)
    encoder_missing = sorted(k for k in missing if "pooler." not in k)
    if encoder_missing:
        log.warning("model %s: %d weights were missing and randomly initialised: %s", name,
                    len(encoder_missing), ", ".join(encoder_missing[:5]))
    return tokenizer, model, missing
