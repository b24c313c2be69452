"""Pooling: turn a transformer's token states into one vector per text.

Plain functions on the model outputs and the attention mask, so each can be
checked against the maths directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["POOLINGS", "cls_pooling", "mean_pooling", "pooler_pooling", "pool", "pool_arrays", "check_pooling"]

POOLINGS = ("mean", "cls", "pooler")


def check_pooling(name: str) -> str:
    """Return ``name`` if it is a known pooling, else raise :class:`~semsearch.errors.BadInput`."""
    from ..errors import BadInput

    if name not in POOLINGS:
        raise BadInput(f"unknown pooling {name!r}; valid values are: {', '.join(POOLINGS)}")
    return name


def cls_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden state of the first token ([CLS])."""
    return last_hidden_state[:, 0]


def mean_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states, weighted by the attention mask (padding ignored)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    summed = (last_hidden_state * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def pooler_pooling(pooler_output: torch.Tensor) -> torch.Tensor:
    """The model's own ``pooler_output``: tanh(W·h_cls + b) for BERT-style models."""
    return pooler_output


def pool_arrays(name: str, outputs: dict[str, np.ndarray], attention_mask: np.ndarray) -> np.ndarray:
    """:func:`pool` on numpy outputs of an exported model (ONNX Runtime, OpenVINO), by output name."""
    if name == "pooler":
        if "pooler_output" not in outputs:
            from ..errors import ModelError

            raise ModelError("this model returns no pooler_output; use pooling 'cls' or 'mean'")
        return outputs["pooler_output"]
    hidden = outputs["last_hidden_state"]
    if name == "cls":
        return hidden[:, 0]
    check_pooling(name)
    mask = attention_mask[:, :, None].astype(hidden.dtype)
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)


def pool(name: str, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
    """Apply the pooling ``name`` to a Hugging Face model output."""
    if name == "mean":
        return mean_pooling(outputs.last_hidden_state, attention_mask)
    if name == "cls":
        return cls_pooling(outputs.last_hidden_state, attention_mask)
    if name == "pooler":
        if getattr(outputs, "pooler_output", None) is None:
            from ..errors import ModelError

            raise ModelError("this model returns no pooler_output; use pooling 'cls' or 'mean'")
        return pooler_pooling(outputs.pooler_output)
    check_pooling(name)
    raise AssertionError("unreachable")
