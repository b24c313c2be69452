"""A deterministic fake embedder: hashed bag of words. Fast, no model, same text → same vector."""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

from semsearch import Embedder


class HashEmbedder(Embedder):
    def __init__(self, dim: int = 64, salt: str = ""):
        self.dim, self.salt, self.normalize = dim, salt, True
        self.calls: list[int] = []  # size of each embed_batch call

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32((self.salt + word).encode()) % self.dim] += 1.0
        return out

    def config(self) -> dict:
        return {"kind": "fake", "model": f"hash{self.salt}", "pooling": "none", "normalize": True, "dim": self.dim}
