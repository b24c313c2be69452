"""Labelling a whole corpus with a few-shot labeller, resumably (``semsearch label``).

Two labellers:

- ``threshold`` (two labels): each text is scored against the two label
  descriptions — by a cross-encoder (logit of (description, text)) when one is
  given, else by the bi-encoder (cosine) — as score(positive) − score(negative);
  a :class:`~semsearch.label.threshold.ThresholdLabeler` fitted on the examples' scores
  turns that into a label and a calibrated probability.
- ``setfit``: a :class:`~semsearch.label.setfit.SetFitLabeler` trained on the examples
  (with LABELS.json its body is tuned towards the label descriptions, else towards label prototypes).
- ``zero-shot``: no examples, a :class:`~semsearch.label.zeroshot.ZeroShotLabeler`: the label whose
  description is closest; its probabilities are not calibrated, and each output line says so
  (``"calibrated": false``).

Output is JSONL ``{"id", "label", "probability"}``, appended batch by batch and
flushed, so an interrupted run loses at most one batch; a re-run skips ids
already in the file.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..corpus.readers import read_jsonl_fields
from ..errors import BadInput
from ..types import Document
from .threshold import ABSTAIN, ThresholdLabeler

__all__ = ["DescriptionScorer", "LabelSummary", "read_examples", "read_label_descriptions", "fit_labeler",
           "label_documents", "check_label_output", "METHODS"]

METHODS = ("threshold", "setfit", "zero-shot")


@dataclass(frozen=True)
class LabelSummary:
    """What a labelling run did: counts per label (``abstain`` included), skipped (already labelled) ids."""

    counts: Mapping[str, int]
    labelled: int
    skipped: int
    output: str


def read_examples(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``EXAMPLES.jsonl``: one ``{"text", "label"}`` per line."""
    texts, labels = [], []
    for number, (text, label) in read_jsonl_fields(path, ("text", "label"), "examples"):
        if not isinstance(text, str) or not text.strip():
            raise BadInput(f"{path}:{number}: empty text")
        texts.append(text)
        labels.append(str(label))
    if not texts:
        raise BadInput(f"{path}: no examples")
    return texts, labels


def read_label_descriptions(path: str | os.PathLike) -> dict[str, str]:
    """``LABELS.json``: ``{label name: short description}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError:
        raise BadInput(f"labels file {str(path)!r} cannot be read") from None
    except ValueError as exc:
        raise BadInput(f"labels file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise BadInput(f"labels file {path} must map each label name to a non-empty description")
    return {str(k): v for k, v in data.items()}


class DescriptionScorer:
    """Score texts against two label descriptions: score(positive) − score(negative).

    With a :class:`~semsearch.Reranker` the scores are cross-encoder logits of
    (description, text); otherwise cosines from the bi-encoder ``embedder``.
    """

    def __init__(self, descriptions: Mapping[str, str], positive: str, *, reranker=None, embedder=None):
        if len(descriptions) != 2 or positive not in descriptions:
            raise BadInput("the threshold method needs exactly two labels with descriptions")
        if reranker is None and embedder is None:
            raise BadInput("a reranker or an embedder is needed to score texts against label descriptions")
        self.positive = positive
        self.negative = next(k for k in descriptions if k != positive)
        self.descriptions, self.reranker, self.embedder = dict(descriptions), reranker, embedder
        if reranker is not None:
            self.score_kind, self.model = "logit", reranker.name
        else:
            self.score_kind, self.model = "cosine", embedder.config().get("model")
            self._desc = embedder.encode([self.descriptions[self.negative], self.descriptions[self.positive]])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self.reranker is not None:
            pos, neg = self.descriptions[self.positive], self.descriptions[self.negative]
            # logits whatever the reranker's activation: a difference of probabilities is not a "logit" score
            scores = self.reranker.logits([(pos, t) for t in texts] + [(neg, t) for t in texts]).scores
            return scores[: len(texts)] - scores[len(texts):]
        emb = self.embedder.encode(list(texts))
        sims = emb @ self._desc.T
        return sims[:, 1] - sims[:, 0]


class _ThresholdMethod:
    calibrated = True

    def __init__(self, scorer: DescriptionScorer, labeler: ThresholdLabeler):
        self.scorer, self.labeler = scorer, labeler

    def label(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        scores = self.scorer(texts)
        p = self.labeler.predict_proba(scores)
        labels = self.labeler.predict(scores)
        # the probability of the label given; an abstention (within the band) gets the positive label's
        return [(lab, float(1 - pi if lab == self.scorer.negative else pi)) for lab, pi in zip(labels, p)]


class _SetFitMethod:
    calibrated = True

    def __init__(self, labeler):
        self.labeler = labeler

    def label(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        proba = self.labeler.predict_proba(texts)
        return [(self.labeler.classes[i], float(row[i])) for row, i in zip(proba, proba.argmax(axis=1))]


class _ZeroShotMethod(_SetFitMethod):
    calibrated = False


def fit_labeler(method: str, texts: Sequence[str], labels: Sequence[str], descriptions: Mapping[str, str] | None,
                *, reranker=None, embedder=None, seed: int = 0, abstain_band: float = 0.0):
    """Fit the chosen labeller on the examples; returns an object with ``label(texts)`` and ``calibrated``.
    ``zero-shot`` takes descriptions and no examples."""
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; valid values are: {', '.join(METHODS)}")
    if method == "zero-shot":
        if texts:
            raise BadInput("the zero-shot method takes no examples; with examples use setfit or threshold")
        if not descriptions:
            raise BadInput("the zero-shot method needs LABELS.json with a description of every label")
        from .zeroshot import ZeroShotLabeler

        return _ZeroShotMethod(ZeroShotLabeler(descriptions, embedder=embedder))
    if not texts:
        raise BadInput(f"the {method} method learns from examples; give some, or use the zero-shot method")
    names = sorted(set(labels) | set(descriptions or {}))
    unknown = sorted(set(labels) - set(descriptions)) if descriptions else []
    if unknown:
        raise BadInput(f"examples use labels that LABELS.json does not describe: {', '.join(unknown)}")
    if method == "setfit":
        from .setfit import SetFitLabeler

        return _SetFitMethod(SetFitLabeler(descriptions=descriptions, seed=seed).fit(texts, labels))
    if not descriptions:
        raise BadInput("the threshold method needs LABELS.json with a description of each of the two labels")
    if len(names) != 2:
        raise BadInput(f"the threshold method handles two labels, got {len(names)}: {', '.join(names)}")
    positive = names[1]
    scorer = DescriptionScorer(descriptions, positive, reranker=reranker, embedder=embedder)
    labeler = ThresholdLabeler(score_kind=scorer.score_kind, model=scorer.model, abstain_band=abstain_band,
                               labels=(scorer.negative, positive))
    labeler.fit(scorer(texts), labels)
    return _ThresholdMethod(scorer, labeler)


def label_documents(docs: Iterable[Document], method, output: str | os.PathLike, *, batch_size: int = 256,
                    total: int | None = None, progress: bool = True) -> LabelSummary:
    """Label ``docs`` with a fitted ``method`` into ``output`` (JSONL), skipping ids already there."""
    from tqdm.auto import tqdm

    output = Path(output)
    done, cut = _read_output(output)
    if cut is not None:
        with open(output, "r+b") as fh:
            fh.truncate(cut)
    counts: Counter[str] = Counter()
    labelled = skipped = 0
    with open(output, "a", encoding="utf-8") as fh, tqdm(total=total, unit="doc", desc="labelling",
                                                         file=sys.stderr, disable=not progress) as bar:
        pending: list[Document] = []

        def flush() -> None:
            nonlocal labelled
            results = method.label([d.embedding_text for d in pending])
            for doc, (label, p) in zip(pending, results):
                row = {"id": doc.id, "label": label, "probability": round(p, 6)}
                if not getattr(method, "calibrated", True):
                    row["calibrated"] = False
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[label] += 1
            fh.flush()
            os.fsync(fh.fileno())
            labelled += len(pending)
            bar.update(len(pending))
            pending.clear()

        for doc in docs:
            if doc.id in done:
                skipped += 1
                bar.update(1)
                continue
            pending.append(doc)
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    counts.setdefault(ABSTAIN, 0)
    return LabelSummary(dict(counts), labelled, skipped, str(output))


_ROW_START = b'{"id": '  # how every row label_documents writes begins


def check_label_output(output: str | os.PathLike) -> set[str]:
    """The ids already labelled in ``output`` (none if it does not exist yet), checked before any work is done.

    Raises :class:`~semsearch.errors.BadInput` if ``output`` cannot be appended to (a folder, a missing
    folder, not UTF-8) or holds a line that is not a labelling output row. Changes nothing:
    :func:`label_documents` cuts a torn last row (from a crash mid-write) before it appends.
    """
    return _read_output(Path(output))[0]


def _read_output(output: Path) -> tuple[set[str], int | None]:
    """Ids in ``output`` and, if its last line is a torn row of ours, the length to cut it back to."""
    if not output.parent.is_dir():
        raise BadInput(f"cannot write {output}: the folder {output.parent} does not exist")
    if output.is_dir():
        raise BadInput(f"{output} is a folder; --output takes a JSONL file")
    if not output.exists():
        return set(), None
    try:
        raw = output.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {output}: {exc.strerror or exc}") from None
    end = raw.rfind(b"\n") + 1
    complete, tail = raw[:end], raw[end:]
    cut = None
    if tail:  # no newline at the end: a torn row of ours (cut mid-write, maybe mid-character) is cut off,
        # anything else is not ours to touch
        if not (tail.startswith(_ROW_START) or _ROW_START.startswith(tail)):
            number = complete.count(b"\n") + 1
            raise BadInput(f"{output}:{number}: not a labelling output line; refusing to append to it")
        cut = len(complete)
    try:
        lines = complete.decode("utf-8").split("\n")[:-1]  # rows end in "\n"; not splitlines(): U+2028 is text
    except UnicodeDecodeError:
        raise BadInput(f"{output} is not a UTF-8 labelling output; refusing to append to it") from None
    ids = set()
    for number, line in enumerate(lines, start=1):
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{output}:{number}: not a labelling output line; refusing to append to it") from None
    return ids, cut
