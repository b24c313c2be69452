"""Run a model over items in batches of similar length, keeping input order."""

from __future__ import annotations

import re
from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")

#: texts are clipped to max tokens × this many characters before tokenising (:func:`clip_texts`)
CHARS_PER_TOKEN = 64
_SPACE_RUN = re.compile(r"\s{65,}")  # a run this long is padding: kept to its first 64 characters


def check_batch_size(batch_size: int) -> None:
    """Raise :class:`~semsearch.errors.BadInput` unless ``batch_size`` is at least 1."""
    if batch_size < 1:
        from ..errors import BadInput

        raise BadInput(f"batch size must be at least 1, got {batch_size}")


def clip_texts(texts: Sequence[str], max_tokens: int) -> list[str]:
    """Texts cut to ``max_tokens × 64`` characters, so a 10 MB text costs no more to tokenise than a long one
    (a model reads at most ``max_tokens`` tokens, which never take that many characters). A text that long
    has its runs of more than 64 whitespace characters cut to 64 first, so padding cannot push its words past
    the cut; shorter texts, and ordinary spacing, are left as they are.

    >>> [len(t) for t in clip_texts([" " * 5000 + "hello world", "short"], 64)]
    [75, 5]
    """
    limit = max_tokens * CHARS_PER_TOKEN
    out = []
    for t in texts:
        if len(t) > limit:
            t = _SPACE_RUN.sub(lambda m: m.group(0)[:64], t)[:limit]
        out.append(t)
    return out


def run_sorted(
    items: Sequence[T],
    lengths: Sequence[int],
    batch_size: int,
    fn: Callable[[list[T]], np.ndarray],
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Apply ``fn`` to batches of ``items`` grouped by ``lengths`` (longest first); rows come back in input order.

    Similar lengths share a batch, so little compute goes to padding; the longest
    batch runs first, so peak memory shows at once.

    >>> run_sorted(["bb", "a", "ccc"], [2, 1, 3], 2, lambda b: np.array([len(x) for x in b]))
    array([2, 1, 3])
    """
    check_batch_size(batch_size)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    out: np.ndarray | None = None
    for start in range(0, len(items), batch_size):
        idx = order[start : start + batch_size]
        rows = np.asarray(fn([items[i] for i in idx]))
        if len(rows) != len(idx):
            from ..errors import ModelError

            raise ModelError(f"model returned {len(rows)} rows for a batch of {len(idx)}")
        if out is None:
            out = np.empty((len(items), *rows.shape[1:]), dtype=rows.dtype)
        out[idx] = rows
        if on_batch is not None:
            on_batch(len(idx))
    return out if out is not None else np.empty((0,), dtype=np.float32)
