"""How a model runs on the CPU: precision (fp32, bf16, int8) and backend (torch, ONNX Runtime).

Shared by the bi-encoder and the cross-encoder.

- ``fp32`` on ``torch``: the reference.
- ``bf16`` on ``torch``: bfloat16 autocast; fast where the CPU has native bf16
  (AVX-512 BF16 or AMX), vectors agree with fp32 to about 1e-4 in cosine.
- ``fp32`` on ``onnx``: the model exported to ONNX and run by ONNX Runtime.
- ``int8`` on ``onnx``: the exported model with its matrix weights quantised to int8
  (dynamic quantisation, per output channel); activations are quantised per batch,
  so a text's vector depends slightly on which texts share its batch.

Exported and quantised files are cached under :func:`cache_dir`, keyed by the
weights' SHA-256, and reused; each export is checked against the torch model.

>>> resolve_precision("int8")
('int8', 'onnx')
>>> resolve_precision("bf16", "onnx")
Traceback (most recent call last):
semsearch.errors.BadInput: precision 'bf16' does not run on backend 'onnx'; it runs: fp32, int8
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import BadInput, ModelError
from .models import bf16_supported

__all__ = ["PRECISIONS", "BACKENDS", "resolve_precision", "autocast", "OnnxRunner", "onnx_runner", "cache_dir",
           "same_vectors"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "torch", "onnx")
_RUNS = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8")}
#: Precisions whose vectors may share an index (measured by benchmarks/inference_speed.py:
#: corpus and queries embedded at different precisions lose no measurable nDCG@10 on SciFact).
_MIXABLE = ({"fp32", "bf16"},)
_EXPORT_VERSION = 1  # bump when the exported graph changes, so stale cache entries are not reused
_ONNX_HINT = "install ONNX Runtime with `pip install 'semsearch[onnx]'`, or use precision fp32 or bf16"


def resolve_precision(precision: str | None = "auto", backend: str | None = "auto") -> tuple[str, str]:
    """The (precision, backend) pair to run: ``auto`` picks bf16 on torch where the CPU has native
    bf16, else fp32; an int8 precision implies the onnx backend."""
    precision, backend = precision or "auto", backend or "auto"
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; valid values are: {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; valid values are: {', '.join(BACKENDS)}")
    if precision == "auto":
        precision = "fp32" if backend == "onnx" or not bf16_supported() else "bf16"
    if backend == "auto":
        backend = "onnx" if precision == "int8" else "torch"
    if precision not in _RUNS[backend]:
        raise BadInput(f"precision {precision!r} does not run on backend {backend!r}; "
                       f"it runs: {', '.join(_RUNS[backend])}")
    if precision == "bf16" and not bf16_supported():
        log.warning("this CPU has no native bfloat16; bf16 runs emulated and is slower than fp32")
    return precision, backend


def same_vectors(a: str, b: str) -> bool:
    """Whether vectors made at precisions ``a`` and ``b`` may be searched against each other."""
    return a == b or any({a, b} <= group for group in _MIXABLE)


def autocast(precision: str):
    """The torch context for ``precision``: bf16 autocast, or nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def cache_dir() -> Path:
    """Where exported models are kept: ``$SEMSEARCH_CACHE``, else ``$XDG_CACHE_HOME/semsearch``
    (``~/.cache/semsearch``)."""
    if os.environ.get("SEMSEARCH_CACHE"):
        return Path(os.environ["SEMSEARCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "semsearch"


class OnnxRunner:
    """An ONNX Runtime session fed with a tokenizer's numpy output; returns the outputs by name."""

    def __init__(self, session, path: Path):
        self.session, self.path = session, path
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]

    def __call__(self, encoding) -> dict[str, np.ndarray]:
        feed = {name: np.asarray(encoding[name], dtype=np.int64) for name in self.inputs}
        return dict(zip(self.outputs, self.session.run(None, feed)))


_SESSIONS: dict[tuple[str, int], Any] = {}


def onnx_runner(model, tokenizer, *, task: str, precision: str, weights_sha256: str | None, name: str,
                sample: Sequence = ("a short text", "a somewhat longer text to export with")) -> OnnxRunner:
    """``model`` exported to ONNX (``task``: ``"encoder"`` or ``"classifier"``) at ``precision``
    (``fp32`` or ``int8``), from the cache when it is there; sessions are shared within the process."""
    _import_onnxruntime()
    import torch

    threads = torch.get_num_threads()
    if weights_sha256:
        folder = cache_dir() / "onnx" / f"{weights_sha256[:24]}-{task}-v{_EXPORT_VERSION}"
    else:  # nothing to key a cache entry on: export for this process only
        folder = Path(tempfile.mkdtemp(prefix="semsearch-onnx-"))
        log.info("model %s has no weights file to fingerprint; exporting it without caching", name)
    path = folder / f"model-{precision}.onnx"
    key = (str(path), threads)
    if key in _SESSIONS:
        return OnnxRunner(_SESSIONS[key], path)
    fp32_path = folder / "model-fp32.onnx"
    if not fp32_path.is_file():
        _export(model, tokenizer, task, sample, fp32_path, name, threads)
    if precision == "int8" and not path.is_file():
        _quantize(fp32_path, path, name)
    _SESSIONS[key] = _session(path, threads)
    return OnnxRunner(_SESSIONS[key], path)


def _session(path: Path, threads: int):
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load the exported model {path} ({exc}); delete it to export again") from exc


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"the onnx backend needs ONNX Runtime, which is not installed; {_ONNX_HINT}") from None
    return onnxruntime


def _encode_sample(tokenizer, task: str, sample: Sequence, tensors: str):
    if task == "classifier":
        return tokenizer([f"{s}?" for s in sample], list(sample), padding=True, return_tensors=tensors)
    return tokenizer(list(sample), padding=True, return_tensors=tensors)


def _output_names(model, task: str) -> list[str]:
    if task == "classifier":
        return ["logits"]
    return ["last_hidden_state"] + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])


def _export(model, tokenizer, task: str, sample: Sequence, path: Path, name: str, threads: int) -> None:
    """Export with the legacy TorchScript exporter (eager attention: a plain graph ONNX Runtime runs well),
    check the result against the torch model, then move it into place."""
    import torch

    enc = _encode_sample(tokenizer, task, sample, "pt")
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    outputs = _output_names(model, task)

    class _Graph(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            out = self.inner(**dict(zip(inputs, tensors)))
            return tuple(getattr(out, o) for o in outputs)

    previous = getattr(model.config, "_attn_implementation", None)
    if previous not in (None, "eager") and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    axes = {n: {0: "batch", 1: "tokens"} for n in inputs + outputs}
    axes.update({o: {0: "batch"} for o in outputs if o in ("pooler_output", "logits")})
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Graph(model).eval(), tuple(enc[k] for k in inputs), str(tmp), input_names=inputs,
                              output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
    except Exception as exc:  # the exporter raises many types
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot export model {name!r} to ONNX: {exc}; use backend torch") from exc
    finally:
        if previous not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(previous)
        model.eval()
    try:
        _check_export(model, tokenizer, task, sample, OnnxRunner(_session(tmp, threads), tmp), name)
    except ModelError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    (path.parent / "export.json").write_text(json.dumps(
        {"model": name, "task": task, "inputs": inputs, "outputs": outputs, "opset": 17,
         "export_version": _EXPORT_VERSION, "torch": torch.__version__}, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s to %s", name, path)


def _quantize(source: Path, path: Path, name: str) -> None:
    """Dynamic int8 quantisation of the matrix multiplications, per output channel (u8 activations, s8 weights)."""
    _import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    quiet = logging.getLogger().level
    try:
        logging.getLogger().setLevel(max(quiet, logging.ERROR))  # the quantiser logs advice at WARNING
        quantize_dynamic(str(source), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot quantise model {name!r} to int8: {exc}") from exc
    finally:
        logging.getLogger().setLevel(quiet)
    os.replace(tmp, path)
    log.info("quantised %s to int8: %s", name, path)


def _check_export(model, tokenizer, task: str, sample: Sequence, runner: OnnxRunner, name: str) -> None:
    """Refuse an export that does not reproduce the torch model (fp32, masked positions only)."""
    import torch

    enc = _encode_sample(tokenizer, task, sample, "pt")
    with torch.inference_mode():
        out = model(**enc)
    got = runner({k: v.numpy() for k, v in enc.items()})
    for key, value in got.items():
        want = getattr(out, key).float().numpy()
        if key == "last_hidden_state":
            mask = enc["attention_mask"].numpy().astype(bool)
            want, value = want[mask], value[mask]
        diff = float(np.abs(want - value).max())
        if diff > 1e-3:
            raise ModelError(f"the ONNX export of {name!r} does not reproduce the model ({key} differs by "
                             f"{diff:.2g}); use backend torch")
