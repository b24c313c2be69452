"""A tokenizer for the exported runtimes that needs only the ``tokenizers`` package (no transformers, no torch).

At export, the Hugging Face tokenizer's own fast backend (``tokenizer.backend_tokenizer``, after
transformers has applied the model's settings to it) is saved beside the exported model, with its padding
token and sides. :class:`FastTokenizer` loads that file and is called like the Hugging Face tokenizer for
what semsearch asks of it: token counts, and padded, truncated numpy batches of texts or text pairs.
The self-check of every exported variant (:mod:`.agreement`) runs through it, so a tokenizer that
disagreed with transformers' would show there.

>>> tok = FastTokenizer.from_hugging_face(hf_tokenizer)                        # doctest: +SKIP
>>> tok(["a cat", "a dog on a mat"], padding=True, truncation=True, max_length=8)["input_ids"]  # doctest: +SKIP
[[101, 1037, 4937, 102, 0, 0, 0], [101, 1037, 3899, 2006, 1037, 13523, 102]]
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["FastTokenizer", "TOKENIZER_FILE"]

TOKENIZER_FILE = "tokenizer.json"


class FastTokenizer:
    """The subset of a Hugging Face fast tokenizer's call that semsearch uses, on ``tokenizers`` alone."""

    def __init__(self, backend_json: str, *, pad_id: int, pad_token: str, pad_type_id: int = 0,
                 padding_side: str = "right", truncation_side: str = "right"):

        self._json = backend_json
        self.settings = {"pad_id": int(pad_id), "pad_token": str(pad_token), "pad_type_id": int(pad_type_id),
                         "padding_side": padding_side, "truncation_side": truncation_side}
        self._plain = None  # for token counts: no truncation, no padding (made when first needed)
        self._padded: dict[int, Any] = {}  # max_length -> a tokenizer configured to pad and truncate there
        self._lock = threading.Lock()

    @property
    def json(self) -> str:
        """The tokenizer as ``tokenizer.json`` text."""
        return self._json

    @classmethod
    def from_hugging_face(cls, tokenizer) -> "FastTokenizer":
        """The backend of a transformers fast tokenizer, with its padding settings."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer")
        return cls(backend.to_str(), pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                   pad_token=tokenizer.pad_token or "[PAD]", pad_type_id=getattr(tokenizer, "pad_token_type_id", 0),
                   padding_side=getattr(tokenizer, "padding_side", "right"),
                   truncation_side=getattr(tokenizer, "truncation_side", "right"))

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write the backend as ``tokenizer.json`` in ``folder``; returns the settings to store beside it."""
        Path(folder, TOKENIZER_FILE).write_text(self._json, encoding="utf-8")
        return dict(self.settings)

    @classmethod
    def load(cls, folder: str | Path, settings: dict[str, Any]) -> "FastTokenizer":
        """The tokenizer :meth:`save` wrote, with the settings it returned."""
        return cls(Path(folder, TOKENIZER_FILE).read_text(encoding="utf-8"), **settings)

    def _counter(self):
        with self._lock:
            if self._plain is None:
                from tokenizers import Tokenizer

                self._plain = Tokenizer.from_str(self._json)
                self._plain.no_truncation()
                self._plain.no_padding()
            return self._plain

    def _configured(self, max_length: int):
        with self._lock:
            if max_length not in self._padded:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_str(self._json)
                s = self.settings
                tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction=s["truncation_side"])
                tok.enable_padding(direction=s["padding_side"], pad_id=s["pad_id"], pad_type_id=s["pad_type_id"],
                                   pad_token=s["pad_token"])
                self._padded[max_length] = tok
            return self._padded[max_length]

    def __call__(self, text: Sequence[str], text_pair: Sequence[str] | None = None, *, padding: bool = False,
                 truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None,
                 **ignored) -> dict[str, Any]:
        """Token ids of texts (or text pairs): plain lists without padding and truncation (token counts), or
        ``int64`` arrays padded to the longest and cut at ``max_length`` (``padding=True, truncation=True``)."""
        items = list(text) if text_pair is None else list(zip(text, text_pair))
        if not (padding or truncation):
            return {"input_ids": [e.ids for e in self._counter().encode_batch(items)]}
        if not (padding and truncation and max_length):
            raise ValueError("FastTokenizer pads and truncates together, at a max_length")
        encodings = self._configured(int(max_length)).encode_batch(items)
        out = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
               "attention_mask": [e.attention_mask for e in encodings]}
        if return_tensors == "np":
            return {k: np.asarray(v, dtype=np.int64).reshape(len(items), -1) for k, v in out.items()}
        return out

    def __repr__(self) -> str:
        return f"FastTokenizer({json.loads(self._json).get('model', {}).get('type', '?')})"
