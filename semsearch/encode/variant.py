"""One Hugging Face model run at one precision and backend, for the bi-encoder and the cross-encoder alike.

:class:`RuntimeModel` loads the torch model only when something needs it: running on torch, exporting,
or checking a variant against fp32 for the first time on this CPU. Once the model's export and its
check are in the cache (:mod:`.runtime`, :mod:`.agreement`), an exported variant starts with neither
torch nor transformers imported.

>>> rt = RuntimeModel(Path("models/m"), "models/m", "encoder", "AutoModel")        # doctest: +SKIP
>>> facts = rt.facts(lambda rt: {"dim": rt.model.config.hidden_size})            # doctest: +SKIP
>>> rt.start("int8", "openvino", max_length=256)                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from .agreement import Agreement, agreement_key, cached_agreement, checked
from .models import load_pretrained, weights_sha256
from .runtime import export_model, model_cache, read_export, runner_for, variant_file

__all__ = ["RuntimeModel", "RuntimeBacked", "stored_check"]

log = logging.getLogger(__name__)


class RuntimeModel:
    """A model folder (``source``) for ``task`` (``"encoder"`` or ``"classifier"``), loaded with
    ``transformers.<auto_class>`` when needed; ``on_load(rt)`` validates a freshly loaded model."""

    def __init__(self, source: str | Path, name: str, task: str, auto_class: str, *, trust_remote_code: bool = False,
                 device: str = "cpu", hint: str = "", on_load: Callable[["RuntimeModel"], None] | None = None):
        self.source, self.name, self.task, self.auto_class = Path(source), name, task, auto_class
        self.trust_remote_code, self.device, self.hint, self.on_load = bool(trust_remote_code), device, hint, on_load
        self.weights_sha256 = weights_sha256(self.source)
        self.cache = model_cache(self.source, self.weights_sha256, task)
        self.export = read_export(self.cache)
        self.runner = None  # the exported model on ONNX Runtime or OpenVINO, once started there
        self.tokens = None  # its tokenizer (tokenizers only)
        self._loaded: tuple | None = None
        self._facts: dict[str, Any] | None = None

    # --- the torch model, when needed ---------------------------------------------------------------

    def _load(self) -> tuple:
        if self._loaded is None:
            tokenizer, model, missing = load_pretrained(self.auto_class, self.source, self.name,
                                                        self.trust_remote_code, hint=self.hint,
                                                        cache=self.device == "cpu")
            model.to(self.device)
            self._loaded = (tokenizer, model, missing)
            if self.on_load is not None:
                self.on_load(self)
        return self._loaded

    @property
    def model(self):
        """The torch model (loaded on first use; shared with other users of the same weights)."""
        return self._load()[1]

    @property
    def tokenizer(self):
        """The Hugging Face tokenizer (loaded with the model)."""
        return self._load()[0]

    @property
    def missing(self) -> frozenset:
        """Weights the checkpoint lacked (initialised at random by transformers)."""
        return self._load()[2]

    @property
    def token_counter(self):
        """A tokenizer to count tokens with: the export's where the model runs exported, else transformers'."""
        return self.tokens if self.runner is not None else self.tokenizer

    # --- facts, variants, checks -----------------------------------------------------------------------

    def facts(self, compute: Callable[["RuntimeModel"], dict[str, Any]]) -> dict[str, Any]:
        """What the caller needs to know about the model (dimension, length limit, head): recorded in the
        export when there is one, else ``compute(self)`` from the loaded model."""
        if self._facts is None:
            recorded = self.export.facts if self.export is not None else {}
            self._facts = recorded if recorded else compute(self)
        return self._facts

    def start(self, precision: str, backend: str, *, max_length: int) -> None:
        """Set up the model to run at ``precision`` on ``backend`` (exporting and quantising first if needed)."""
        if backend == "torch":
            self.runner = self.tokens = None
            self._load()
            return
        if self.export is None:
            self.export = export_model(self.model, self.tokenizer, self.task, self.cache, self.name,
                                       self.facts(lambda rt: {}))
        self.tokens = self.export.tokenizer()
        self.runner = runner_for(self.export, precision, backend, max_length=max_length, name=self.name)

    def check(self, precision: str, backend: str, *, max_length: int, pooling: str | None,
              measure: Callable[[], Agreement]) -> Agreement | None:
        """This variant's agreement with fp32 on this CPU: stored, or measured now and stored (``None`` for fp32
        on torch, the reference)."""
        if (precision, backend) == ("fp32", "torch"):
            return None
        key = agreement_key(self.task, precision, backend, pooling=pooling, max_length=max_length,
                            model_file=self.runner.path if self.runner is not None else None)
        return checked(self.cache, key, measure)


class RuntimeBacked:
    """What the bi-encoder and the cross-encoder share: a :class:`RuntimeModel` in ``_rt``, its torch model
    loaded on first use, and starting a variant with its check (:meth:`_measure`, against fp32)."""

    _rt: RuntimeModel
    max_length: int
    precision: str
    backend: str
    _check_pooling: str | None = None  # part of a check's key: the bi-encoder's pooling

    @property
    def model(self):
        """The torch model (loaded on first use where the model runs exported)."""
        return self._rt.model

    @property
    def tokenizer(self):
        """The Hugging Face tokenizer (loaded with the model)."""
        return self._rt.tokenizer

    def _measure(self, precision: str, backend: str) -> Agreement:
        raise NotImplementedError

    def _start(self, precision: str, backend: str) -> Agreement | None:
        """Set up ``precision`` on ``backend`` and return its agreement with fp32 (``None``: it is fp32 on torch)."""
        self.precision, self.backend = precision, backend
        self._rt.start(precision, backend, max_length=self.max_length)
        return self._rt.check(precision, backend, max_length=self.max_length, pooling=self._check_pooling,
                              measure=lambda: self._measure(precision, backend))


def stored_check(source: str | Path, weights_sha256: str | None, task: str, precision: str, backend: str, *,
                 pooling: str | None, max_length: int) -> Agreement | None:
    """The check this CPU stored for a variant of the model in ``source``, if it ran here (loads nothing)."""
    if not weights_sha256 or (precision, backend) == ("fp32", "torch"):
        return None
    folder = model_cache(source, weights_sha256, task)
    model_file = None
    if backend != "torch":
        model_file = variant_file(folder, precision, backend)
        if not model_file.is_file():
            return None
    try:
        key = agreement_key(task, precision, backend, pooling=pooling, max_length=max_length, model_file=model_file)
    except OSError:
        return None
    return cached_agreement(folder, key)
