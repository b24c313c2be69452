"""Stage 3 without examples: labels from the label descriptions alone.

:class:`ZeroShotLabeler` embeds each text and every label description with the bi-encoder and picks
the description it is closest to (cosine). Its probabilities are a softmax of the cosines times
:data:`ZERO_SHOT_SCALE`: nothing was fitted to the user's data, so they rank texts but are **not
calibrated** (``calibrated`` is ``False``, and ``semsearch label`` writes that beside each label). With a
few labelled examples, :class:`~semsearch.label.setfit.SetFitLabeler` learns from them and calibrates.

>>> lab = ZeroShotLabeler({"positive": "a great movie", "negative": "a bad movie"})   # doctest: +SKIP
>>> lab.predict(["a gripping, beautiful film"])                                        # doctest: +SKIP
['positive']
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import BadInput
from .crossfit import softmax
from .features import unit_rows

__all__ = ["ZeroShotLabeler", "ZERO_SHOT_SCALE"]

#: Cosine-to-logit scale of the zero-shot probabilities, the one description tuning trains its cosines at. No
#: scale calibrates every dataset: on the dev splits the ECE was lowest at 20 for SST-2, 5 for SST-5 and Subj,
#: 10-20 for TREC; 10 has the lowest mean (0.095; 5: 0.113, 20: 0.129). So the probabilities stay uncalibrated.
ZERO_SHOT_SCALE = 10.0


class ZeroShotLabeler:
    """Labels from cosines between texts and label descriptions; no examples, no training.

    Args:
        descriptions: ``{label: short description}``, at least two labels.
        embedder: the bi-encoder (anything with ``encode(texts)`` returning one row per text);
            default: a :class:`~semsearch.encode.transformer.TransformerEmbedder` of the embedded MiniLM.
        scale: cosines are multiplied by this before the softmax (:data:`ZERO_SHOT_SCALE`).
    """

    calibrated = False

    def __init__(self, descriptions: Mapping[str, str], *, embedder=None, scale: float = ZERO_SHOT_SCALE):
        if len(descriptions) < 2:
            raise BadInput("zero-shot labelling needs descriptions of at least two labels")
        if not all(isinstance(v, str) and v.strip() for v in descriptions.values()):
            raise BadInput("every label needs a non-empty description")
        if not scale > 0:
            raise BadInput(f"scale must be positive, not {scale!r}")
        if embedder is None:
            from ..encode.transformer import TransformerEmbedder

            embedder = TransformerEmbedder()
        self.classes = sorted(descriptions)
        self.descriptions = {c: descriptions[c] for c in self.classes}
        self.embedder, self.scale = embedder, float(scale)
        self._desc = unit_rows(embedder.encode([self.descriptions[c] for c in self.classes]))

    def cosines(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, len(classes))`` cosines of each text to each description, columns in :attr:`classes` order."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.empty((0, len(self.classes)))
        return unit_rows(self.embedder.encode(texts)) @ self._desc.T

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax of the scaled cosines (uncalibrated), columns in :attr:`classes` order."""
        return softmax(self.scale * self.cosines(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The label whose description is closest to each text."""
        return [self.classes[i] for i in self.cosines(texts).argmax(axis=1)]
