"""The head's extra features: cosines of an embedding to label anchors (descriptions or prototypes).

Plain functions on numpy arrays. A label's *prototype* is the normalised mean of its examples'
embeddings; the training examples' cosines to the prototypes leave each example out of its own label's
mean, since a new text is never part of the mean it is compared with.

>>> emb = unit_rows([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
>>> protos, cosines = leave_one_out_prototypes(emb, [0, 0, 1, 1], 2)
>>> cosines.round(2).tolist()  # own label: the other example alone
[[0.8, 0.32], [0.8, 0.82], [0.32, 0.8], [0.82, 0.8]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def unit_rows(rows) -> np.ndarray:
    """The rows of ``rows`` scaled to unit length (float64); an all-zero row stays zero."""
    a = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def leave_one_out_prototypes(emb: np.ndarray, y: Sequence[int], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Label prototypes and the examples' leave-one-out cosines to them.

    ``emb`` ``(n, d)`` unit rows, ``y`` each row's label index in ``range(classes)``. Returns the
    prototypes ``(classes, d)`` (each label's normalised mean) and ``(n, classes)`` cosines of each
    example to every prototype, its own label's mean taken without it (zero where it is its label's
    only example).
    """
    emb = np.asarray(emb, dtype=np.float64)
    y = np.asarray(y)
    sums = np.zeros((classes, emb.shape[1]))
    np.add.at(sums, y, emb)
    own = np.eye(classes)[y]  # (n, classes)
    left_out = sums[None, :, :] - own[:, :, None] * emb[:, None, :]
    norms = np.linalg.norm(left_out, axis=2, keepdims=True)
    left_out = np.divide(left_out, norms, out=np.zeros_like(left_out), where=norms > 0)
    return unit_rows(sums), np.einsum("nd,nkd->nk", emb, left_out)
