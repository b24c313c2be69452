"""Stage 1a — any Hugging Face encoder as a bi-encoder, at any precision and backend.

>>> emb = TransformerEmbedder()                      # the embedded all-MiniLM-L6-v2
>>> emb.encode(["a cat", "a dog"]).shape             # doctest: +SKIP
(2, 384)
>>> TransformerEmbedder(precision="int8", backend="openvino").agreement.summary()   # doctest: +SKIP
'min cosine 0.9862, mean 0.9972, 0 below 0.95, on 170 texts (floor 0.98; openvino 2026.4.1 on AMD EPYC)'
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadInput, ManifestMismatch, ModelError
from .agreement import measure_vectors, report, settle
from .batching import clip_texts, run_sorted
from .embedder import Embedder, check_same_embedder
from .models import (
    DEFAULT_MODEL,
    check_remote_code,
    model_folder,
    model_name,
    weights_sha256,
)
from .pooling import check_pooling, pool, pool_arrays
from .precision import autocast, fill_in, resolve_precision, runnable_here, runs_here
from .tokenizer import FastTokenizer
from .variant import RuntimeBacked, RuntimeModel, stored_check

__all__ = ["TransformerEmbedder", "DEFAULT_MODEL", "embedder_from_config", "embedder_loader", "model_weights_sha256",
           "stored_agreement"]

log = logging.getLogger(__name__)



class TransformerEmbedder(RuntimeBacked, Embedder):
    """Any Hugging Face encoder, loaded with ``AutoTokenizer``/``AutoModel`` (when it needs to be).

    Args:
        model: local folder or hub id; ``None`` means :data:`DEFAULT_MODEL` (embedded, offline).
        pooling: ``"mean"``, ``"cls"`` or ``"pooler"``. ``None``: the model's own
            sentence-transformers config if it has one, else ``"mean"``.
        normalize: L2-normalise vectors (default on; the index uses inner product).
        max_length: tokens per text; ``None``: the sentence-transformers config, else
            the model's limit (at most 512).
        trust_remote_code: run code shipped with a hub model. Off unless you ask.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"`` (bf16 where the CPU has it, else fp32);
            see :mod:`semsearch.encode.precision`.
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime), ``"openvino"`` (OpenVINO; its int8 is static, faster and
            closer to fp32) or ``"auto"`` (torch; for int8 where it runs fastest here: openvino on CPUs with VNNI
            or AMX, else onnx; see :func:`~semsearch.encode.precision.int8_backend`).
        unsupported_modules: what to do with a sentence-transformers model whose modules.json lists modules
            semsearch does not run (a ``Dense`` layer, say): ``"refuse"`` (default: its vectors would not be
            the model's) or ``"skip"`` (embed with the transformer and pooling alone, with a warning: how an
            index built before such models were refused keeps its vectors consistent).

    Any variant other than fp32 on torch is checked against fp32 once per CPU and model
    (:mod:`semsearch.encode.agreement`; the result is ``agreement``). Below the floor it falls back, with a
    warning, to one whose vectors mix with it (bf16 → fp32, exported fp32 → torch fp32), or is refused
    (int8) with :class:`~semsearch.encode.agreement.AgreementError`. An exported variant whose export
    and check are cached runs without importing torch.

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
        unsupported_modules: str = "refuse",
    ):
        if unsupported_modules not in ("refuse", "skip"):
            raise BadInput(f"unknown unsupported_modules {unsupported_modules!r}; valid values are: refuse, skip")
        if pooling is not None:
            check_pooling(pooling)
        precision, backend = resolve_precision(precision, backend)
        if max_length is not None and max_length < 1:
            raise BadInput(f"max length must be at least 1, got {max_length}")
        self.name = model_name(model)
        folder = model_folder(self.name)
        st = _sentence_transformers_defaults(folder, self.name)
        if st.get("unsupported_modules"):
            what = (f"model {self.name!r} is a sentence-transformers model with modules semsearch does not run "
                    f"({', '.join(st['unsupported_modules'])})")
            if unsupported_modules == "refuse":
                raise ModelError(f"{what}; its vectors would not be the model's. Transformer, Pooling and Normalize "
                                 "modules are supported")
            log.warning("%s; embedding with its transformer and pooling alone, as the index was built", what)
        if pooling is None and st.get("unsupported_pooling"):
            raise ModelError(
                f"model {self.name!r} uses sentence-transformers pooling {st['unsupported_pooling']}, which "
                "semsearch does not implement; pass pooling 'mean', 'cls' or 'pooler' explicitly"
            )
        self.pooling = pooling or st.get("pooling") or "mean"
        self.normalize = bool(normalize)
        self.device = device
        self.trust_remote_code = bool(trust_remote_code)
        self._rt = RuntimeModel(st.get("transformer_path") or folder, self.name, "encoder", "AutoModel",
                                trust_remote_code=trust_remote_code, device=device, on_load=_warn_missing)
        facts = self._rt.facts(_encoder_facts)
        if self.pooling == "pooler" and facts["pooler"] != "trained":
            raise ModelError(f"model {self.name!r} has no pooler layer; use pooling 'cls' or 'mean'"
                             if facts["pooler"] == "none" else
                             f"model {self.name!r} has no trained pooler weights (they would be random); "
                             "use pooling 'cls' or 'mean'")
        if max_length is not None and max_length > facts["limit"]:
            raise BadInput(f"max length {max_length} is more than model {self.name!r} reads ({facts['limit']} tokens)")
        self.max_length = int(max_length or st.get("max_length") or facts["limit"])
        self.dim = int(facts["dim"])
        self.weights_sha256 = self._rt.weights_sha256
        self.precision, self.backend, self.agreement = settle(self._start, precision, backend,
                                                              f"bi-encoder {self.name}", runs_here)

    def _measure(self, precision: str, backend: str):
        return measure_vectors(self._fp32_vectors, self._vectors, precision, backend)

    @property
    def _check_pooling(self) -> str:
        return self.pooling

    @property
    def _runner(self):
        return self._rt.runner

    def config(self) -> dict[str, Any]:
        """How this embedder was set up, as an index's manifest records it (:func:`embedder_from_config`)."""
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

    def tokenizer_json(self) -> str:
        tokenizer = self._rt.token_counter
        if isinstance(tokenizer, FastTokenizer):
            return tokenizer.json
        return tokenizer.backend_tokenizer.to_str()

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (at most ``max_length``): batches are formed from texts of similar token count.
        Texts longer than ``max_length`` tokens are counted and logged: the model reads only their start."""
        enc = self._rt.token_counter(self._clip(texts), truncation=False, return_attention_mask=False,
                                     return_token_type_ids=False, verbose=False)
        counts = [len(ids) for ids in enc["input_ids"]]
        cut = sum(c > self.max_length for c in counts)
        self.truncated = getattr(self, "truncated", 0) + cut  # a running count: callers report it once per job
        if cut:
            log.info("%d of %d texts were longer than %d tokens; the model reads their first %d", cut, len(counts),
                     self.max_length, self.max_length)
        return [min(c, self.max_length) for c in counts]

    def _clip(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to ``max_length × 64`` characters (:func:`~semsearch.encode.batching.clip_texts`)."""
        return clip_texts(texts, self.max_length)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        texts = self._clip(texts)
        if self._rt.runner is not None:  # numpy only: torch's threads would compete with the runtime's
            enc = self._rt.tokens(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="np")
            return pool_arrays(self.pooling, self._rt.runner(enc), enc["attention_mask"])
        return self._torch_batch(texts, self.precision)

    def _torch_batch(self, texts: Sequence[str], precision: str) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode(), autocast(precision):
            out = self.model(**enc)
            vectors = pool(self.pooling, out, enc["attention_mask"])
        return vectors.float().cpu().numpy()

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        """This variant's raw vectors, batched by length (no token counting: the check is no job)."""
        texts = self._clip(texts)
        return run_sorted(texts, [len(t) for t in texts], 32, self._checked_batch)

    def _fp32_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """torch fp32's vectors of ``texts``: the reference of the check."""
        texts = self._clip(texts)
        return run_sorted(texts, [len(t) for t in texts], 32, lambda batch: self._torch_batch(batch, "fp32"))


def embedder_from_config(config: dict[str, Any], precision: str | None = None, backend: str | None = None, *,
                         trust_remote_code: bool = False) -> Embedder:
    """Rebuild the embedder an index was built with, from its manifest entry.

    ``precision``/``backend`` default to the recorded ones. A model recorded with ``trust_remote_code``
    loads only if ``trust_remote_code`` is given now too (:class:`~semsearch.errors.ModelError`
    otherwise). Where the recorded precision cannot run here, a precision whose vectors mix with it is
    used instead (bf16 without native bf16 → fp32, ONNX fp32 without ONNX Runtime → torch fp32), with a
    warning.
    """
    return embedder_loader(config, precision, backend, trust_remote_code=trust_remote_code)()


def embedder_loader(config: dict[str, Any], precision: str | None = None, backend: str | None = None, *,
                    trust_remote_code: bool = False) -> Callable[[], Embedder]:
    """:func:`embedder_from_config` in two steps: what can be refused without a model is refused now
    (a custom embedder, a precision whose vectors do not mix, a runtime that is not installed); the
    returned function loads the model (a model recorded with ``trust_remote_code`` only if it is given)."""
    if config.get("kind") != "transformers":
        raise ManifestMismatch(
            f"the index was built with a custom embedder of kind {config.get('kind')!r}; "
            "pass that embedder when opening it"
        )
    recorded = (config.get("precision", "fp32"), config.get("backend", "torch"))
    if precision is None and backend is None:
        # an exported runtime that is missing is refused now; whether torch has native bf16 is asked only when
        # the model loads (it needs torch imported, which a lexical search never does)
        precision, backend = recorded if recorded[1] == "torch" else runnable_here(*recorded, "the index's embedder")
    else:
        precision, backend = fill_in(recorded, precision, backend)
        resolved = resolve_precision(precision, backend)
        check_same_embedder(config, {**config, "precision": resolved[0], "backend": resolved[1]})

    def load() -> Embedder:
        nonlocal precision, backend
        check_remote_code(config, trust_remote_code, "the index's embedder")  # when it loads: a lazy open needs none
        if (precision, backend) == recorded and backend == "torch":
            precision, backend = runnable_here(precision, backend, "the index's embedder")
        embedder = TransformerEmbedder(
            config["model"],
            pooling=config["pooling"],
            normalize=config["normalize"],
            max_length=config["max_length"],
            trust_remote_code=bool(config.get("trust_remote_code", False)),
            precision=precision,
            backend=backend,
            unsupported_modules="skip",  # the index's vectors were made so: searching it must make the same
        )
        check_same_embedder(config, embedder.config())
        return embedder

    return load


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
        elif not kind.endswith(".Normalize"):  # vectors are normalised anyway (normalize=True)
            found.setdefault("unsupported_modules", []).append(kind.rsplit(".", 1)[-1] or "?")
    return found


def stored_agreement(config: dict[str, Any]) -> dict[str, Any] | None:
    """The check this CPU stored for the embedder an index records (``None`` for a custom embedder);
    loads no model (:func:`semsearch.encode.agreement.report`)."""
    if config.get("kind") != "transformers":
        return None
    precision, backend = config.get("precision", "fp32"), config.get("backend", "torch")
    try:
        folder = model_folder(config["model"])
    except ModelError as exc:
        return {"precision": precision, "backend": backend, "status": "model missing", "summary": str(exc)}
    source = _sentence_transformers_defaults(folder, config["model"]).get("transformer_path") or folder
    found = stored_check(source, config.get("weights_sha256"), "encoder", precision, backend,
                         pooling=config.get("pooling"), max_length=int(config.get("max_length") or 0))
    return report(precision, backend, found)


def model_weights_sha256(model: str | os.PathLike | None) -> str | None:
    """The weights hash :class:`TransformerEmbedder` would record for ``model``, without loading it."""
    name = model_name(model)
    folder = model_folder(name)
    return weights_sha256(_sentence_transformers_defaults(folder, name).get("transformer_path") or folder)


def _encoder_facts(rt: RuntimeModel) -> dict[str, Any]:
    """What an exported encoder records about its model, so that it can start without loading it."""
    model, tokenizer = rt.model, rt.tokenizer
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512,
                int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512)))
    pooler = "none" if getattr(model, "pooler", None) is None else (
        "untrained" if any("pooler." in key for key in rt.missing) else "trained")
    return {"dim": int(model.config.hidden_size), "limit": int(limit), "pooler": pooler}


def _warn_missing(rt: RuntimeModel) -> None:
    encoder_missing = sorted(k for k in rt.missing if "pooler." not in k)
    if encoder_missing:
        log.warning("model %s: %d weights were missing and randomly initialised: %s", rt.name,
                    len(encoder_missing), ", ".join(encoder_missing[:5]))
