"""Stage 2 — the cross-encoder: reads (query, document) pairs and scores their relevance.

:meth:`Reranker.score` is the one scoring method; :meth:`Reranker.rerank`
reorders search hits with it. Any Hugging Face sequence-classification model
with one output (or two: relevant vs not) works, sentence-transformers
``CrossEncoder`` folders included. Scores are raw logits unless the reranker
was made with ``activation="sigmoid"`` (probabilities); ``score_kind`` says which.

>>> reranker = Reranker("models/scifact-reranker")                       # doctest: +SKIP
>>> reranker.score([("what causes rain?", "Rain falls when ...")]).scores  # doctest: +SKIP
array([3.21], dtype=float32)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..encode.agreement import measure_scores, report, settle
from ..encode.batching import check_batch_size, clip_texts, run_sorted
from ..encode.models import check_remote_code, model_folder, model_name
from ..encode.precision import (
    autocast,
    fill_in,
    resolve_precision,
    runnable_here,
    runs_here,
)
from ..encode.variant import RuntimeBacked, RuntimeModel, stored_check
from ..errors import BadInput, ModelError
from ..types import Hit
from .blend import BlendCheck, blend_order

__all__ = ["Reranker", "PairScores", "stored_agreement", "ACTIVATIONS", "DEFAULT_RERANK_MAX_LENGTH", "RERANKER_CONFIG"]

log = logging.getLogger(__name__)

ACTIVATIONS = ("none", "sigmoid")
DEFAULT_RERANK_MAX_LENGTH = 256
_TRAIN_HINT = "pass a local cross-encoder folder, or train one with `semsearch train-reranker`"
#: Written by ``semsearch train-reranker`` next to the weights: max length, score kind, blend weight.
RERANKER_CONFIG = "semsearch_reranker.json"


@dataclass(frozen=True)
class PairScores:
    """Scores of pairs, in input order, and how many pairs were cut to ``max_length`` tokens."""

    scores: np.ndarray
    truncated: np.ndarray  # bool per pair

    @property
    def truncated_count(self) -> int:
        return int(self.truncated.sum())


#: How many passages per document a reranker can read.
PASSAGES_READ = (1, 2)


class Reranker(RuntimeBacked):
    """A cross-encoder.

    Args:
        model: local folder or hub id of a sequence-classification model.
        max_length: tokens per (query, document) pair; longer pairs are cut and counted.
        batch_size: pairs per model call (pairs are sorted by token count first).
        activation: ``"none"`` (scores are logits) or ``"sigmoid"`` (probabilities).
        first_stage_weight: the blend of its order with the first stage's, 0 (its own order) to 1 (the first
            stage's; what a reranker gets when its check finds no gain). Default: the trained one, else 0.
        trust_remote_code: run code shipped with a hub model. Off unless you ask.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"`` (bf16 where the CPU has it, else fp32);
            see :mod:`semsearch.encode.precision`.
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime), ``"openvino"`` (OpenVINO; its int8 is static, faster and
            closer to fp32) or ``"auto"`` (torch; for int8 where it runs fastest here: openvino on CPUs with VNNI
            or AMX, else onnx; see :func:`~semsearch.encode.precision.int8_backend`).
        passages: how many of a hit's best passages it reads (1 or 2); a document scores its best pair.

    Any variant other than fp32 on torch is checked against fp32 once per CPU and model (Pearson of the
    scores, :mod:`semsearch.encode.agreement`; the result is ``agreement``), and falls back or is refused
    below the floor as :class:`~semsearch.TransformerEmbedder` does.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        activation: str = "none",
        first_stage_weight: float | None = None,
        trust_remote_code: bool = False,
        precision: str = "auto",
        backend: str = "auto",
        passages: int = 1,
    ):
        if passages not in PASSAGES_READ:
            raise BadInput(f"a reranker reads 1 or 2 passages per document, not {passages!r}")
        if activation not in ACTIVATIONS:
            raise BadInput(f"unknown activation {activation!r}; valid values are: {', '.join(ACTIVATIONS)}")
        if max_length is not None and max_length < 8:
            raise BadInput(f"reranker max length must be at least 8, got {max_length}")
        if first_stage_weight is not None and not 0 <= first_stage_weight <= 1:
            raise BadInput(f"first-stage weight must be in [0, 1] (1: the first stage's order), got {first_stage_weight}")
        check_batch_size(batch_size)
        precision, backend = resolve_precision(precision, backend)
        self.name = model_name(model)
        try:
            folder = model_folder(self.name)
        except ModelError as exc:
            raise ModelError(f"{exc}; {_TRAIN_HINT}") from None
        self._rt = RuntimeModel(folder, self.name, "classifier", "AutoModelForSequenceClassification",
                                trust_remote_code=trust_remote_code, hint=f"; {_TRAIN_HINT}", on_load=_check_head)
        facts = self._rt.facts(_classifier_facts)
        if facts["num_labels"] not in (1, 2):
            raise ModelError(f"reranker {self.name!r} has {facts['num_labels']} outputs; a reranker needs 1 (or 2)")
        trained = _trained_config(folder)
        limit = facts["limit"]
        self.max_length = min(int(max_length or trained.get("max_length") or DEFAULT_RERANK_MAX_LENGTH), limit)
        if max_length and max_length > limit:
            log.warning("reranker %s reads at most %d tokens; using max length %d", self.name, limit, limit)
        self.first_stage_weight = float(
            first_stage_weight if first_stage_weight is not None else trained.get("first_stage_weight", 0.0)
        )
        self.batch_size, self.activation, self.passages = int(batch_size), activation, int(passages)
        self.trust_remote_code = bool(trust_remote_code)
        self.weights_sha256 = self._rt.weights_sha256
        self.tuned_on: dict[str, Any] | None = None  # set when the blend weight was tuned for an index
        #: first-stage hits per query the trained blend weight was fitted on (None: not recorded)
        self.trained_candidates: int | None = trained.get("candidates")
        self._trained_check = trained.get("check")
        self.precision, self.backend, self.agreement = settle(self._start, precision, backend,
                                                              f"reranker {self.name}", runs_here)

    def _measure(self, precision: str, backend: str):
        return measure_scores(lambda p: self._scores_of(p, "fp32", torch=True), lambda p: self._scores_of(p, precision),
                              precision, backend)

    @property
    def check(self) -> BlendCheck | None:
        """What the reranker gains over a first stage on judged queries it was not trained on: the check
        of ``semsearch tune --rerank`` for an index if there was one, else the one made while training."""
        found = (self.tuned_on or {}).get("check") or self._trained_check
        return BlendCheck.from_dict(found) if found else None

    @property
    def score_kind(self) -> str:
        """``"logit"`` or ``"probability"``: what :meth:`score` returns (thresholds depend on it)."""
        return "probability" if self.activation == "sigmoid" else "logit"

    def config(self) -> dict[str, Any]:
        """What an index's manifest records of this reranker (:meth:`from_config` loads it again)."""
        return {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "max_length": self.max_length,
            "activation": self.activation,
            "score_kind": self.score_kind,
            "first_stage_weight": self.first_stage_weight,
            "trust_remote_code": self.trust_remote_code,
            "precision": self.precision,
            "backend": self.backend,
            "passages": self.passages,
            **({"first_stage_weight_tuned_on": self.tuned_on} if self.tuned_on else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], precision: str | None = None, backend: str | None = None, *,
                    trust_remote_code: bool = False) -> "Reranker":
        """The reranker described by a manifest's ``reranker`` entry, at ``precision``/``backend``
        (default: the recorded ones, or the nearest that runs here). One recorded with
        ``trust_remote_code`` loads only if ``trust_remote_code`` is given now too."""
        check_remote_code(config, trust_remote_code, "the index's reranker")
        recorded = (config.get("precision", "fp32"), config.get("backend", "torch"))
        if precision is None and backend is None:
            precision, backend = runnable_here(*recorded, f"reranker {config['model']}")
        else:
            precision, backend = fill_in(recorded, precision, backend)
        reranker = cls(
            config["model"],
            max_length=config.get("max_length"),
            activation=config.get("activation", "none"),
            first_stage_weight=config.get("first_stage_weight"),
            trust_remote_code=config.get("trust_remote_code", False),
            precision=precision,
            backend=backend,
            passages=int(config.get("passages", 1)),
        )
        reranker.tuned_on = config.get("first_stage_weight_tuned_on")
        if reranker.activation == "sigmoid" and reranker.tuned_on and reranker.tuned_on.get("blend_of") != "logits":
            log.warning("the blend weight of reranker %s may have been tuned on its probabilities (its tuning does "
                        "not say); the blend reads its logits, as training fits it: run `semsearch tune --rerank` "
                        "again to be sure", reranker.name)
        return reranker

    def score(
        self, pairs: Sequence[tuple[str, str]], on_batch: Callable[[int], None] | None = None
    ) -> PairScores:
        """Score (query, document) pairs; pairs from many queries can be scored together."""
        raw = self.logits(pairs, on_batch)
        return PairScores(self._activate(raw.scores), raw.truncated)

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        """What :meth:`score` reports: the logits, or with ``activation="sigmoid"`` their probabilities."""
        if self.activation == "sigmoid":
            return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, np.float64)))).astype(np.float32)  # no overflow
        return logits

    def logits(self, pairs: Sequence[tuple[str, str]], on_batch: Callable[[int], None] | None = None) -> PairScores:
        """The model's logit of each pair, before any ``activation`` (what the blend and thresholds on score
        differences read), and which pairs were cut."""
        # both sides clipped as the bi-encoder clips a text: a huge query or document costs no more than a long one
        queries = clip_texts([str(q) for q, _ in pairs], self.max_length)
        pairs = list(zip(queries, clip_texts([str(d) for _, d in pairs], self.max_length)))
        if not pairs:
            return PairScores(np.empty(0, dtype=np.float32), np.zeros(0, dtype=bool))
        full = self._rt.token_counter([q for q, _ in pairs], [d for _, d in pairs], truncation=False,
                                      return_attention_mask=False, return_token_type_ids=False)
        lengths = np.array([len(ids) for ids in full["input_ids"]])
        truncated = lengths > self.max_length
        scores = run_sorted(pairs, np.minimum(lengths, self.max_length), self.batch_size, self._batch, on_batch)
        if truncated.any():
            log.warning("%d of %d (query, document) pairs were longer than %d tokens and were truncated",
                        int(truncated.sum()), len(pairs), self.max_length)
        return PairScores(scores.astype(np.float32), truncated)

    def _batch(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return self._logit_scores(pairs, self.precision, torch=self._rt.runner is None)

    def _logit_scores(self, pairs: list[tuple[str, str]], precision: str, torch: bool) -> np.ndarray:
        """The model's score of each pair before any activation: on the exported runtime, or on torch."""
        if not torch:  # numpy only: torch's threads would compete with the runtime's
            enc = self._rt.tokens([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="np")
            logits = self._rt.runner(enc)["logits"].astype(np.float32)
        else:
            import torch as th

            enc = self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            with th.inference_mode(), autocast(precision):
                logits = self.model(**enc).logits.float().numpy()
        return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]

    def _scores_of(self, pairs, precision: str, torch: bool = False) -> np.ndarray:
        """Scores of the check pairs at ``precision`` (this variant's runtime unless ``torch``), batched by length."""
        pairs = list(pairs)
        run_torch = torch or self._rt.runner is None
        return run_sorted(pairs, [len(q) + len(d) for q, d in pairs], self.batch_size,
                          lambda batch: self._logit_scores(batch, precision, run_torch))

    def score_hits(self, queries: Sequence[str], hits: Sequence[Sequence[Hit]]
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's hits scored, ``(logits, truncated)`` per query: the pair (query, title and best
        passage), or with ``passages`` 2 the better of the best two passages. One scoring call for all. The
        blend with the first stage reads these logits whatever the ``activation`` (its weight was fitted on
        them: a sigmoid, min-max scaled, would blend differently)."""
        texts = [[h.passage_texts(self.passages) for h in hs] for hs in hits]
        result = self.logits([(q, t) for q, ts in zip(queries, texts) for per_hit in ts for t in per_hit])
        out, at = [], 0
        for hs, ts in zip(hits, texts):
            scores, cut = np.empty(len(hs), np.float32), np.zeros(len(hs), bool)
            for i, per_hit in enumerate(ts):
                best = at + int(np.argmax(result.scores[at : at + len(per_hit)]))
                scores[i], cut[i] = result.scores[best], result.truncated[best]
                at += len(per_hit)
            out.append((scores, cut))
        return out

    def rerank(self, queries: Sequence[str], hits: Sequence[Sequence[Hit]], k: int) -> list[list[Hit]]:
        """Reorder each query's hits (given in first-stage order) and keep the best ``k``.

        The cross-encoder reads (query, title and best passage) pairs, or the best ``passages`` of each
        hit with the document's score the best of them. Pairs of all queries are scored in one call.
        Hits keep their first-stage ``score`` and gain ``rerank_score`` (and ``truncated`` when the pair
        that scored was cut). The order is by cross-encoder score, blended with the first-stage rank
        when ``first_stage_weight`` > 0 (see :func:`blend_order`).
        """
        out = []
        for hs, (logits, cut) in zip(hits, self.score_hits(queries, hits)):
            order = blend_order(list(range(len(hs))), logits, self.first_stage_weight)[:k]
            scores = self._activate(logits)
            out.append([
                dataclasses.replace(hs[i], rank=r, rerank_score=float(scores[i]), truncated=bool(cut[i]))
                for r, i in enumerate(order, start=1)
            ])
        return out


def _trained_config(folder) -> dict[str, Any]:
    path = Path(folder) / RERANKER_CONFIG
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None


def stored_agreement(config: dict[str, Any]) -> dict[str, Any]:
    """The check this CPU stored for the reranker a manifest records; loads no model
    (:func:`semsearch.encode.agreement.report`)."""
    precision, backend = config.get("precision", "fp32"), config.get("backend", "torch")
    try:
        folder = model_folder(config["model"])
    except ModelError as exc:
        return {"precision": precision, "backend": backend, "status": "model missing", "summary": str(exc)}
    found = stored_check(folder, config.get("weights_sha256"), "classifier", precision, backend, pooling=None,
                         max_length=int(config.get("max_length") or DEFAULT_RERANK_MAX_LENGTH))
    return report(precision, backend, found)


def _check_head(rt: RuntimeModel) -> None:
    """A freshly loaded reranker must have a trained head."""
    missing = sorted(k for k in rt.missing if "classifier" in k or "score" in k)
    if missing:
        raise ModelError(
            f"{rt.name!r} is not a cross-encoder: it has no trained classification head ({missing[0]} would be "
            f"random); {_TRAIN_HINT}"
        )


def _classifier_facts(rt: RuntimeModel) -> dict[str, Any]:
    """What an exported reranker records about its model, so that it can start without loading it."""
    model, tokenizer = rt.model, rt.tokenizer
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512,
                int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512)))
    return {"limit": int(limit), "num_labels": int(model.config.num_labels)}
