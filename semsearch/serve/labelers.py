"""Labellers served by name: a SetFit labeller folder (texts in) or a threshold labeller file (scores in).

A :class:`~semsearch.SetFitLabeler` reads texts. A :class:`~semsearch.ThresholdLabeler` maps *scores*
to labels; the scorer it was fitted on (a cross-encoder or bi-encoder against label descriptions)
is not part of its file, so it is served for scores only, and says so when sent texts.

>>> served = ServedLabeler.load("sentiment", "labelers/sentiment")   # doctest: +SKIP
>>> served.predict(texts=["a fine film"])                            # doctest: +SKIP
[{'label': 'positive', 'probability': 0.93}]
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInput
from ..label.setfit import SetFitLabeler
from ..label.threshold import ThresholdLabeler

__all__ = ["ServedLabeler"]


class ServedLabeler:
    """A loaded labeller with one ``predict`` for the HTTP layer (one prediction at a time)."""

    def __init__(self, name: str, labeler: SetFitLabeler | ThresholdLabeler):
        self.name, self.labeler = name, labeler
        self.kind = "setfit" if isinstance(labeler, SetFitLabeler) else "threshold"
        self._lock = threading.Lock()

    @staticmethod
    def check(name: str, path: str | os.PathLike) -> None:
        """Raise :class:`BadInput` unless ``path`` holds a labeller :meth:`load` can read (a quick look, no model)."""
        path = Path(path)
        if path.is_dir():
            if not SetFitLabeler.saved_at(path):
                raise BadInput(f"labeller {name!r}: {path} is a folder but not a saved SetFit labeller "
                               "(no labeler.json)")
        elif path.is_file():
            ThresholdLabeler.load(path)
        else:
            raise BadInput(f"labeller {name!r}: no file or folder at {path}")

    @classmethod
    def load(cls, name: str, path: str | os.PathLike) -> "ServedLabeler":
        """A folder is a SetFit labeller (``SetFitLabeler.save``), a file a threshold one (``ThresholdLabeler.save``)."""
        path = Path(path)
        if path.is_dir():
            return cls(name, SetFitLabeler.load(path))
        if path.is_file():
            return cls(name, ThresholdLabeler.load(path))
        raise BadInput(f"labeller {name!r}: no file or folder at {path}")

    @property
    def labels(self) -> list[str]:
        return list(self.labeler.classes if self.kind == "setfit" else self.labeler.labels)

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, "labels": self.labels,
                "input": "texts" if self.kind == "setfit" else "scores",
                **({"score_kind": self.labeler.score_kind, "model": self.labeler.model}
                   if self.kind == "threshold" else {"model": self.labeler.model})}

    def predict(self, texts: Sequence[str] | None = None, scores: Sequence[float] | None = None) -> list[dict]:
        """A ``{"label", "probability"}`` per text (SetFit) or per score (threshold); the probability is
        that of the label given."""
        if self.kind == "setfit":
            if texts is None:
                raise BadInput(f"labeller {self.name!r} is a SetFit labeller: send texts, not scores")
            with self._lock:
                proba = self.labeler.predict_proba(texts)
            classes = self.labeler.classes
            return [{"label": classes[i], "probability": float(row[i])} for row, i in zip(proba, proba.argmax(axis=1))]
        if scores is None:
            raise BadInput(f"labeller {self.name!r} is a threshold labeller fitted on {self.labeler.score_kind} "
                           "scores; send scores, not texts (its scorer is not part of its file)")
        values = np.asarray(scores, dtype=np.float64)
        with self._lock:
            labels = self.labeler.predict(values)
            positive = self.labeler.predict_proba(values)
        # the probability of the label given; an abstention (within the band) gets the positive label's
        return [{"label": label, "probability": float(1 - p if label == self.labeler.labels[0] else p)}
                for label, p in zip(labels, positive)]
