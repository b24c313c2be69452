"""Stage 3 — few-shot text classification, SetFit-style, on the embedded MiniLM body.

:class:`SetFitLabeler` fine-tunes the sentence-transformers body on a few labelled
examples, then fits a logistic-regression head on the tuned embeddings (SetFit's
two steps). The body is tuned one of three ways:

- ``contrastive``: SetFit's contrastive pairs, with the ``setfit`` library (each label
  description, when given, is one more example of its label);
- ``descriptions`` (the default when every label has a short description): each
  example's cosines to the descriptions are trained as logits with cross-entropy, so
  the body learns to put a text next to its label's description. Starting from the
  descriptions' zero-shot signal, this needs far fewer steps than pairs do.
- ``prototypes`` (the default without a description of every label): the same, with each
  label's prototype — the mean embedding of its other examples — in place of its description.

Descriptions (or, without them, the prototypes) are also evidence for the head: each text's
cosine to every description, scaled by ``description_scale``, is appended to its embedding. Probabilities are
calibrated with a temperature fitted on out-of-fold predictions (``calibration``,
:mod:`semsearch.label.crossfit`); with
description or prototype tuning the fold models are tuned alongside the full one, in threads (``parallel``).

Saved without pickle: the body as a sentence-transformers folder (safetensors),
the head's weights as JSON (setfit's own ``save_pretrained`` would write the head
with joblib, which this project does not use).

>>> lab = SetFitLabeler(seed=0).fit(texts, labels)          # doctest: +SKIP
>>> lab.predict(["a gripping, beautiful film"])             # doctest: +SKIP
['positive']
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..encode.batching import clip_texts
from ..encode.models import (
    bf16_supported,
    load_sentence_transformer,
    model_folder,
    model_name,
)
from ..errors import BadInput, ManifestMismatch
from ..files import atomic_folder
from ..version import __version__
from .crossfit import (
    SMALL_FIT_BELOW,
    assemble,
    fit_temperature,
    fold_count,
    fold_jobs,
    softmax,
    stratified_folds,
)
from .features import leave_one_out_prototypes
from .tuning import (
    Turns,
    run_alongside,
    tune_contrastive,
    tune_on_descriptions,
    tune_on_prototypes,
    tuning_epochs,
)

__all__ = ["SetFitLabeler"]

log = logging.getLogger(__name__)

_FORMAT = "semsearch-setfit-labeler/1"
_CONFIG = "labeler.json"
_HEAD = "head.json"
_BODY = "body"
CALIBRATIONS = ("auto", "crossfit", "none")
TUNINGS = ("auto", "contrastive", "descriptions", "prototypes")
#: the tunings that run in threads alongside each other (their own loop, seeded dropout streams)
_THREADED = ("descriptions", "prototypes")
#: the body's learning rate per tuning (``body_lr=None``): setfit's default for its pairs; 2.5 times that for our
#: own tunings (dev splits of SST-2, SST-5, TREC and Subj, 8-shot: docs/benchmarks/fewshot.md).
BODY_LR = {"contrastive": 2e-5, "descriptions": 5e-5, "prototypes": 5e-5}
#: with a cross-fitted temperature, description tuning takes at least this many steps (``description_min_steps``).
DESCRIPTION_MIN_STEPS = 24


class SetFitLabeler:
    """Few-shot classifier: a bi-encoder body tuned on a few labelled examples, plus a linear head.

    Every default below was chosen on dev splits of SST-2, SST-5, TREC and Subj; what each choice was
    measured against, and by how much, is in docs/benchmarks/fewshot.md.

    >>> lab = SetFitLabeler(descriptions={"pos": "a positive review", "neg": "a negative review"})  # doctest: +SKIP
    >>> lab.fit(texts, labels).predict_proba(["a gripping, beautiful film"])               # doctest: +SKIP

    Args:
        model: body to start from (local folder or hub id); default: the embedded all-MiniLM-L6-v2.
        descriptions: optional ``{label: short description}``: the targets of ``tuning="descriptions"``
            (or one more training example of their label for contrastive tuning), and head features.
        tuning: how the body is fine-tuned. ``"contrastive"``: SetFit's contrastive pairs (the ``setfit``
            library). ``"descriptions"``: each example's cosines to the label descriptions, times
            ``description_logit_scale``, are trained as logits with cross-entropy (every label needs a
            description; the descriptions are encoded by the body being tuned, so they move with it) for
            ``description_epochs`` epochs. ``"prototypes"``: the same with each label's prototype (the
            mean embedding of its examples, the text itself left out; :func:`~semsearch.label.tuning.
            tune_on_prototypes`) in place of its description. ``"auto"`` (default): ``descriptions`` when
            every label has one, else ``prototypes`` (both ahead of contrastive pairs on the dev splits,
            in a fraction of their time).
        num_iterations: SetFit's pair-generation iterations (pairs = 2 × iterations × examples);
            ``None``: as many whole iterations as fit in ``max_pairs`` (at most 20), so training time stays
            bounded (``fit_info`` reports the pairs and steps).
        epochs, batch_size: fine-tuning settings (setfit's defaults); ``epochs`` counts passes over
            the pairs (contrastive) and ``description_epochs`` over the examples.
        body_lr: the body's learning rate; ``None`` (default): :data:`BODY_LR` of the tuning (setfit's 2e-5
            for pairs, 5e-5 for descriptions and prototypes).
        head_c: inverse L2 strength of the logistic-regression head (scikit-learn's ``C``). ``None``
            (default): 1 / (examples per label), so the penalty keeps the same weight against the head's
            log loss at every number of examples: the tuned body separates its few training examples
            easily, and a fixed ``C=1`` head grows over-confident as examples get fewer.
        description_scale: weight of the description (or prototype) cosines among the head's features.
        description_epochs, description_logit_scale: passes over the examples and the cosine scale of
            ``tuning="descriptions"`` and ``"prototypes"``.
        description_min_steps: with few examples, more epochs than ``description_epochs``, as many as it
            takes to reach this many optimiser steps (the cross-fitting fold models then train for as many
            epochs as the full one). ``None`` (default): :data:`DESCRIPTION_MIN_STEPS` when a cross-fitted
            temperature calibrates a fit that is not small, else 0: a longer-tuned body is more accurate
            but more confident, which only a temperature absorbs.
        tune_word_embeddings: whether our tunings also update the body's word-embedding matrix (half of
            MiniLM's weights). Default ``False``: frozen is about 25% faster at the same dev accuracy.
        prototype_features: without descriptions, give the head each text's cosines to the label
            prototypes (the examples' own left out of their label's; kept with the head). Default ``True``.
        calibration: ``"crossfit"`` fits a temperature for the head's logits on out-of-fold
            predictions: the examples are split in k stratified folds, a labeller is trained on all folds
            but one and predicts that one, and the temperature minimising their log loss (under the prior
            of ``temperature_prior_sd``) scales the full model's logits; k more trainings on (k-1)/k of
            the examples. ``"none"``: the head's own probabilities. ``"auto"`` (default): ``crossfit``
            from :data:`~semsearch.label.crossfit.SMALL_FIT_BELOW` examples on (where every label has
            two), else ``none``. Asked for on a *small* fit (fewer examples), cross-fitting is cheap and
            cautious: the fold models tune for the full model's epochs with no step minimum, and the
            temperature only softens (T ≥ 1: from 16 out-of-fold points, all of them right says little,
            but confident mistakes do say the head is too sure). It is not the default there: on the
            test splits it halved SST-2's ECE without descriptions but cost Subj a little, at about plain
            setfit's time instead of a third of it.
        temperature_prior_sd: the standard deviation of a normal prior on log T centred on T = 1
            (:func:`~semsearch.label.crossfit.fit_temperature`), so that a few dozen out-of-fold points
            cannot throw the temperature to the end of its range; ``None``: the plain log-loss optimum.
            Default 1 (chosen leaving one dataset out; never worse there than the plain optimum).
        crossfit_folds: the number of folds; ``None`` (default): four for description or prototype tuning
            below :data:`~semsearch.label.crossfit.CROSSFIT_FOUR_FOLDS_BELOW` examples, else two
            (:func:`~semsearch.label.crossfit.fold_count`); never more than the rarest label has examples.
        parallel: how many models a cross-fitted fit (the full one and one per fold) tunes at once, in
            threads that share torch's threads equally (:func:`~semsearch.label.tuning.run_alongside`).
            ``None`` (default): as many as torch has threads; ``1``: one after another, each with all of
            them. One small model on few short texts keeps 2 threads only partly busy, so two models at
            one thread each finish sooner. Only our own tunings run in threads (setfit's trainer draws
            random numbers outside the forward passes); every model draws dropout from its own seeded
            stream, so a fit depends on its seed and on the threads each model gets, not on how the
            threads interleave.
        bf16: run the body's tuning under bfloat16 autocast (float32 weights); default: when the
            CPU supports it (about 1.6x faster where it does, same accuracy within noise).
        seed: seeds pair sampling, batch order, dropout, the folds and the head.
        progress: tqdm bars (stderr) while tuning.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        descriptions: Mapping[str, str] | None = None,
        tuning: str = "auto",
        num_iterations: int | None = None,
        max_pairs: int = 1280,
        epochs: int = 1,
        batch_size: int = 16,
        body_lr: float | None = None,
        head_c: float | None = None,
        description_scale: float = 50.0,
        description_epochs: int = 4,
        description_logit_scale: float = 10.0,
        description_min_steps: int | None = None,
        tune_word_embeddings: bool = False,
        prototype_features: bool = True,
        calibration: str = "auto",
        temperature_prior_sd: float | None = 1.0,
        crossfit_folds: int | None = None,
        parallel: int | None = None,
        bf16: bool | None = None,
        seed: int = 0,
        progress: bool = False,
    ):
        if (num_iterations is not None and num_iterations < 1) or epochs < 1 or batch_size < 1 or max_pairs < 2:
            raise BadInput("num_iterations, epochs and batch_size must be at least 1, max_pairs at least 2")
        if tuning not in TUNINGS:
            raise BadInput(f"unknown tuning {tuning!r}; valid: {', '.join(TUNINGS)}")
        if head_c is not None and not head_c > 0:
            raise BadInput(f"head_c must be positive (or None for 1 / examples per label), not {head_c!r}")
        if body_lr is not None and not body_lr > 0:
            raise BadInput(f"body_lr must be positive (or None for the tuning's default), not {body_lr!r}")
        if description_epochs < 1 or description_logit_scale <= 0 or (description_min_steps or 0) < 0:
            raise BadInput("description_epochs must be at least 1, description_logit_scale positive and "
                           "description_min_steps at least 0")
        if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
            raise BadInput(f"parallel must be a whole number of models, at least 1 (or None), not {parallel!r}")
        if temperature_prior_sd is not None and not temperature_prior_sd > 0:
            raise BadInput(f"temperature_prior_sd must be positive (or None: no prior), not {temperature_prior_sd!r}")
        if crossfit_folds is not None and (isinstance(crossfit_folds, bool) or not isinstance(crossfit_folds, int)
                                           or crossfit_folds < 2):
            raise BadInput(f"crossfit_folds must be a whole number, at least 2 (or None), not {crossfit_folds!r}")
        if calibration not in CALIBRATIONS:
            raise BadInput(f"unknown calibration {calibration!r}; valid: {', '.join(CALIBRATIONS)}")
        self.model = model_name(model)
        self.descriptions = dict(descriptions or {})
        self.settings = {"tuning": tuning, "description_epochs": description_epochs,
                         "description_logit_scale": description_logit_scale,
                         "description_min_steps": description_min_steps,
                         "tune_word_embeddings": bool(tune_word_embeddings),
                         "prototype_features": bool(prototype_features), "num_iterations": num_iterations,
                         "max_pairs": max_pairs, "epochs": epochs,
                         "batch_size": batch_size, "body_lr": body_lr, "head_c": head_c,
                         "description_scale": description_scale, "calibration": calibration,
                         "temperature_prior_sd": temperature_prior_sd, "crossfit_folds": crossfit_folds,
                         "parallel": parallel,
                         "bf16": bf16,
                         "seed": seed}
        self.progress = progress
        self.temperature = 1.0
        self.body = None
        self.classes: list[str] = []
        self._coef: np.ndarray | None = None
        self._intercept: np.ndarray | None = None
        self._descriptions_emb: np.ndarray | None = None
        self._prototypes: np.ndarray | None = None
        self.fit_info: dict[str, Any] = {}
        #: after a cross-fitted fit: each example's head logits from the fold model that did not see it
        #: (rows in the order of the examples given to :meth:`fit`, columns in :attr:`classes` order)
        self.out_of_fold_logits: np.ndarray | None = None
        self._turns: Turns | None = None  # shared with the models tuned alongside (_fold_jobs)

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> "SetFitLabeler":
        """Train on a few labelled texts (at least one per label; labels are names or ints)."""
        from sklearn.linear_model import LogisticRegression

        texts, labels = [str(t) for t in texts], [str(y) for y in labels]
        if len(texts) != len(labels):
            raise BadInput(f"{len(texts)} texts but {len(labels)} labels")
        if any(not t.strip() for t in texts):
            raise BadInput("an example has an empty text")
        unknown = sorted(set(self.descriptions) - set(labels))
        if unknown:
            raise BadInput(f"descriptions name labels with no examples: {', '.join(unknown)}")
        self.classes = sorted(set(labels))
        if len(self.classes) < 2:
            raise BadInput("need examples of at least two labels")
        examples = list(texts)
        train_texts = texts + list(self.descriptions.values())
        train_labels = labels + list(self.descriptions)
        s = self.settings
        iterations = s["num_iterations"] or max(1, min(20, s["max_pairs"] // (2 * len(train_texts))))
        started = time.perf_counter()
        counts = [labels.count(c) for c in self.classes]
        bf16 = bf16_supported() if s["bf16"] is None else s["bf16"]
        tuning = s["tuning"]
        if tuning == "auto":
            tuning = "descriptions" if set(self.descriptions) == set(self.classes) else "prototypes"
        if tuning == "descriptions" and set(self.descriptions) != set(self.classes):
            missing = ", ".join(sorted(set(self.classes) - set(self.descriptions)))
            raise BadInput(f"tuning='descriptions' needs a description of every label; none for: {missing}")
        small = len(labels) < SMALL_FIT_BELOW
        crossfit = s["calibration"] == "crossfit" or (s["calibration"] == "auto" and not small and min(counts) >= 2)
        if crossfit and min(counts) < 2:
            raise BadInput("cross-fitted calibration needs at least 2 examples of every label")
        body = load_sentence_transformer(model_folder(self.model))
        if tuning in _THREADED:
            min_steps = s["description_min_steps"]
            if min_steps is None:
                min_steps = DESCRIPTION_MIN_STEPS if crossfit and not small else 0
            epochs = tuning_epochs(len(texts), s["batch_size"], s["description_epochs"], min_steps)
            iterations, pairs = 0, 0
        else:
            epochs = s["epochs"]
            pairs = 2 * iterations * len(train_texts)
        turns = self._turns or Turns()
        body_lr = s["body_lr"] if s["body_lr"] is not None else BODY_LR[tuning]

        def tune() -> int:
            if tuning == "contrastive":
                return tune_contrastive(body, train_texts, train_labels, iterations=iterations, epochs=s["epochs"],
                                        batch_size=s["batch_size"], lr=body_lr, seed=s["seed"], bf16=bf16,
                                        progress=self.progress)
            targets = [self.classes.index(y) for y in labels]
            options = dict(epochs=epochs, batch_size=s["batch_size"], lr=body_lr, scale=s["description_logit_scale"],
                           seed=s["seed"], bf16=bf16, word_embeddings=s["tune_word_embeddings"],
                           progress=self.progress, turns=turns)
            if tuning == "prototypes":
                return tune_on_prototypes(body, texts, targets, **options)
            return tune_on_descriptions(body, texts, targets, [self.descriptions[c] for c in self.classes], **options)

        folds = self._fold_jobs(examples, labels, tuning, epochs, s["seed"], turns) if crossfit else []
        parallel = min(self._parallel(tuning), 1 + len(folds))
        steps, *held_out = run_alongside([tune, *folds], parallel, turns)
        self.body = body
        self._descriptions_emb = self._encode(list(self.descriptions.values())) if self.descriptions else None
        emb = self._encode(examples)
        self._prototypes, features = None, self._features_of(emb)
        if not self.descriptions and s["prototype_features"]:
            self._prototypes, features = self._prototype_features(emb, labels)
        head_c = s["head_c"] if s["head_c"] is not None else len(self.classes) / len(examples)
        head = LogisticRegression(C=head_c, max_iter=2000, random_state=s["seed"])
        head.fit(features, labels)
        coef = np.asarray(head.coef_, dtype=np.float64)
        intercept = np.asarray(head.intercept_, dtype=np.float64)
        if len(self.classes) == 2:  # sklearn keeps one row for two classes: the logit of classes_[1]
            coef, intercept = np.vstack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
        self._coef, self._intercept = coef, intercept  # rows follow head.classes_, which is sorted = self.classes
        self.temperature, self.out_of_fold_logits = 1.0, None
        if crossfit:
            logits = self.out_of_fold_logits = assemble(held_out, len(examples), len(self.classes))
            self.temperature = fit_temperature(logits, np.array([self.classes.index(v) for v in labels]),
                                               prior_sd=s["temperature_prior_sd"], soften_only=small)
        self.fit_info = {"examples": len(examples), "tuning": tuning, "pairs_iterations": iterations,
                         "pairs": pairs, "epochs": epochs, "steps": steps, "body_lr": body_lr, "bf16": bf16,
                         "head_c": head_c,
                         "calibration": "crossfit" if crossfit else "none", "crossfit_folds": len(folds),
                         "parallel": parallel, "temperature": self.temperature,
                         "seconds": time.perf_counter() - started}
        return self

    def _parallel(self, tuning: str) -> int:
        """How many models :func:`run_alongside` may tune at once: only our own tunings run in threads."""
        import torch

        if tuning not in _THREADED:
            return 1
        return self.settings["parallel"] or torch.get_num_threads()

    def _out_of_fold_logits(self, texts: list[str], labels: list[str], tuning: str, epochs: int,
                            seed: int) -> tuple[np.ndarray, int]:
        """Each example's logits from a labeller trained on the folds it is not in (:meth:`_fold_jobs`), and k."""
        turns = Turns()
        jobs = self._fold_jobs(texts, labels, tuning, epochs, seed, turns)
        return assemble(run_alongside(jobs, self._parallel(tuning), turns), len(texts), len(self.classes)), len(jobs)

    def _fold_jobs(self, texts: list[str], labels: list[str], tuning: str, epochs: int, seed: int,
                   turns: Turns) -> list:
        """Cross-fitting, as k jobs (:func:`~semsearch.label.crossfit.fold_jobs`) returning ``(held, logits)``.

        Folds: :func:`~semsearch.label.crossfit.fold_count` (four for description tuning of few examples:
        labellers trained on 3/4 of the examples are closer to the full one than halves are; two for
        contrastive tuning, each labeller getting half the pair budget). Description tuning runs the full
        model's ``epochs`` in every fold model (so each sees its examples as often as the full one did).
        ``seed`` draws the folds and seeds the fold models; ``turns`` is shared by the models tuned alongside.
        """
        k = fold_count(tuning, labels, self.classes, self.settings["crossfit_folds"])
        settings = dict(self.settings, calibration="none", tuning=tuning, seed=seed,
                        max_pairs=max(2, self.settings["max_pairs"] * (k - 1) // k))
        if tuning in _THREADED:
            settings.update(description_epochs=epochs, description_min_steps=0)

        def make() -> "SetFitLabeler":
            part = SetFitLabeler(self.model, descriptions=self.descriptions, **settings)
            part._turns = turns
            return part

        return fold_jobs(make, SetFitLabeler._logits, texts, labels, stratified_folds(labels, self.classes, k, seed))

    def _encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = clip_texts(texts, int(self.body.max_seq_length or 512))  # a huge text costs no more than a long one
        return self.body.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False).astype(np.float64)

    def _features(self, texts: Sequence[str]) -> np.ndarray:
        return self._features_of(self._encode(texts))

    def _features_of(self, emb: np.ndarray) -> np.ndarray:
        """The head's features: the embedding, then its cosines to the label descriptions (or, without
        descriptions, to the label prototypes) times ``description_scale``."""
        anchors = self._descriptions_emb if self._descriptions_emb is not None else self._prototypes
        if anchors is None:
            return emb
        return np.hstack([emb, self.settings["description_scale"] * emb @ anchors.T])

    def _prototype_features(self, emb: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The label prototypes (rows in :attr:`classes` order) and the examples' head features against them,
        each example left out of its own label's prototype, as a new text is: otherwise the head would learn
        from cosines a text never has."""
        prototypes, cosines = leave_one_out_prototypes(emb, [self.classes.index(v) for v in labels],
                                                       len(self.classes))
        return prototypes, np.hstack([emb, self.settings["description_scale"] * cosines])

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Probabilities ``(n, len(classes))``, columns in :attr:`classes` order."""
        self._check_fitted()
        texts = [str(t) for t in texts]
        if not texts:
            return np.empty((0, len(self.classes)))
        return softmax(self._logits(texts) / self.temperature)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """The head's logits ``(n, len(classes))`` before the temperature: ``predict_proba`` is their
        softmax after dividing by :attr:`temperature`."""
        self._check_fitted()
        return self._logits([str(t) for t in texts]) if texts else np.empty((0, len(self.classes)))

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        return self._features(texts) @ self._coef.T + self._intercept

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label of each text."""
        proba = self.predict_proba(texts)
        return [self.classes[i] for i in proba.argmax(axis=1)]

    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the labeller to a folder: body (safetensors), head and config (JSON). Atomic."""
        self._check_fitted()
        folder = Path(folder)
        if folder.exists():
            ours = folder.is_dir() and (not any(folder.iterdir()) or self.saved_at(folder))
            if not ours:
                raise BadInput(f"{folder} exists and is not a SetFit labeller; refusing to replace it")
            if any(folder.iterdir()) and not overwrite:
                raise BadInput(f"{folder} exists; pass overwrite=True to replace it")
        with atomic_folder(folder) as tmp:
            self.body.save(str(tmp / _BODY), safe_serialization=True)
            (tmp / _HEAD).write_text(json.dumps({
                "classes": self.classes, "coef": self._coef.tolist(), "intercept": self._intercept.tolist(),
                "descriptions_embedding": None if self._descriptions_emb is None else self._descriptions_emb.tolist(),
                "prototypes": None if self._prototypes is None else self._prototypes.tolist(),
                "temperature": self.temperature,
            }), encoding="utf-8")
            (tmp / _CONFIG).write_text(json.dumps({
                "format": _FORMAT, "semsearch_version": __version__, "model": self.model,
                "descriptions": self.descriptions, "settings": self.settings, "fit": self.fit_info,
            }, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def saved_at(folder: str | os.PathLike) -> bool:
        """Whether ``folder`` holds a labeller :meth:`save` wrote (of a format :meth:`load` reads)."""
        try:
            return json.loads((Path(folder) / _CONFIG).read_text(encoding="utf-8")).get("format") == _FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SetFitLabeler":
        """A labeller written by :meth:`save`, ready to predict."""
        folder = Path(folder)
        try:
            config = json.loads((folder / _CONFIG).read_text(encoding="utf-8"))
            head = json.loads((folder / _HEAD).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read a SetFit labeller at {folder}: {exc}") from None
        if config.get("format") != _FORMAT:
            raise ManifestMismatch(f"{folder} is not a semsearch SetFit labeller ({_FORMAT})")
        lab = cls(descriptions=config["descriptions"], **config["settings"])
        lab.model, lab.fit_info = config["model"], config["fit"]
        lab.body = load_sentence_transformer(folder / _BODY)
        lab.classes = head["classes"]
        lab._coef, lab._intercept = np.asarray(head["coef"]), np.asarray(head["intercept"])
        lab.temperature = float(head.get("temperature", 1.0))
        if head.get("descriptions_embedding") is not None:
            lab._descriptions_emb = np.asarray(head["descriptions_embedding"])
        if head.get("prototypes") is not None:
            lab._prototypes = np.asarray(head["prototypes"])
        return lab

    def _check_fitted(self) -> None:
        if self.body is None or self._coef is None:
            raise BadInput("the labeller is not fitted yet; call fit() first")

