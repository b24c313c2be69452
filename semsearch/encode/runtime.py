"""How a model runs on the CPU: precision (fp32, bf16, int8) and backend (torch, ONNX Runtime, OpenVINO).

Shared by the bi-encoder and the cross-encoder.

- ``fp32`` on ``torch``: the reference.
- ``bf16`` on ``torch``: bfloat16 autocast; fast where the CPU has native bf16
  (AVX-512 BF16 or AMX). On all-MiniLM-L6-v2 vectors keep cosine ≥ 0.9999 to fp32.
- ``fp32`` on ``onnx``: the model exported to ONNX and run by ONNX Runtime.
- ``int8`` on ``onnx``: the exported model with its matrix weights quantised to int8
  (dynamic quantisation, per output channel); activations are quantised per batch,
  so a text's vector depends slightly on which texts share its batch. On
  all-MiniLM-L6-v2: mean cosine 0.993 to fp32 (see the README's benchmark).
- ``fp32``, ``bf16`` and ``int8`` on ``openvino``: the exported model run by OpenVINO; its int8 is
  static (weights and activations, calibrated once on texts shipped with semsearch), faster and closer
  to fp32 than ONNX Runtime's (see :mod:`semsearch.encode.openvino`).

fp32 and bf16 vectors share an index whatever the backend; int8 vectors only with int8 vectors of the
same backend (:func:`same_vectors`).

Exported and quantised files are cached under :func:`cache_dir`, keyed by the
weights' SHA-256 and the model config, and reused; whenever one is loaded it is first
checked against the torch model on a few texts.

>>> resolve_precision("int8")
('int8', 'onnx')
>>> resolve_precision("int8", "openvino")
('int8', 'openvino')
>>> resolve_precision("bf16", "onnx")
Traceback (most recent call last):
semsearch.errors.BadInput: precision 'bf16' does not run on backend 'onnx'; it runs: fp32, int8
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadInput, ModelError
from .models import bf16_supported

__all__ = ["PRECISIONS", "BACKENDS", "resolve_precision", "autocast", "OnnxRunner", "model_runner", "cache_dir",
           "same_vectors", "vector_kind", "onnxruntime_available", "runnable_here", "fill_in"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "torch", "onnx", "openvino")
_RUNS = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
#: Vector kinds (:func:`vector_kind`) that may share an index (measured by benchmarks/inference_speed.py:
#: corpus and queries embedded at different kinds lose no measurable nDCG@10 on SciFact).
_MIXABLE = ({"fp32", "bf16"},)
_EXPORT_VERSION = 1  # bump when the exported graph changes, so stale cache entries are not reused
_ONNX_HINT = "install it with `pip install 'semsearch[onnx]'`"


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


def runnable_here(precision: str, backend: str, what: str) -> tuple[str, str]:
    """A recorded precision/backend, or the nearest one that runs here and gives the same vectors/scores
    (bf16 without native bf16 → fp32; fp32 on ONNX Runtime without it → fp32 on torch), with a warning."""
    if precision == "bf16" and not bf16_supported():
        log.warning("%s was recorded in bf16, which this CPU lacks; using fp32", what)
        return "fp32", "torch"
    if backend == "onnx" and not onnxruntime_available():
        if precision == "fp32":
            log.warning("%s was recorded with ONNX Runtime, which is not installed; using torch fp32", what)
            return "fp32", "torch"
        raise ModelError(f"{what} was recorded in {precision}, which needs ONNX Runtime; {_ONNX_HINT}")
    if backend == "openvino":
        from .openvino import OPENVINO_HINT, openvino_available

        if not openvino_available():
            if precision in _RUNS["torch"]:
                log.warning("%s was recorded with OpenVINO, which is not installed; using torch %s", what, precision)
                return precision, "torch"
            raise ModelError(f"{what} was recorded in {precision} on OpenVINO, which is not installed; {OPENVINO_HINT}")
    return precision, backend


def fill_in(recorded: tuple[str, str], precision: str | None, backend: str | None) -> tuple[str, str]:
    """The precision/backend asked for, with what was not asked taken from ``recorded`` where it fits."""
    if precision is None and backend is None:
        return recorded
    if precision is None:
        precision = recorded[0] if recorded[0] in _RUNS.get(backend, ()) else "auto"
    return precision, backend or "auto"


def vector_kind(precision: str, backend: str) -> str:
    """What decides whether vectors mix: the precision, and for int8 also the backend (ONNX Runtime's
    dynamic and OpenVINO's static int8 are different approximations).

    >>> vector_kind("bf16", "openvino"), vector_kind("int8", "onnx"), vector_kind("int8", "openvino")
    ('bf16', 'int8', 'int8-openvino')
    """
    return "int8-openvino" if precision == "int8" and backend == "openvino" else precision


def same_vectors(a: str, b: str) -> bool:
    """Whether vectors of kinds ``a`` and ``b`` (:func:`vector_kind`) may be searched against each other."""
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


_RUNNERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()  # one export at a time: it switches the (shared) model's attention implementation
_EXPORT_SAMPLE = ("a short text", "a somewhat longer text to export the model with")
_CHECK_SAMPLE = ("one", "a different number of texts, of other lengths, to check the graph with", "three words here")
#: Largest relative error (‖onnx − torch‖ / ‖torch‖ over real tokens) an export may show: fp32 must reproduce
#: the model; int8 must stay close (MiniLM shows about 0.14; independent outputs of the same size give ~1.4).
_TOLERANCE = {"fp32": 1e-3, "bf16": 0.05, "int8": 0.25}


def model_runner(model, tokenizer, *, task: str, precision: str, weights_sha256: str | None, name: str,
                 backend: str = "onnx", max_length: int = 512):
    """``model`` exported to ONNX (``task``: ``"encoder"`` or ``"classifier"``) and run at ``precision``
    by ``backend`` (``onnx``: ONNX Runtime, fp32 or dynamic int8; ``openvino``: fp32, bf16 or static int8
    calibrated at ``max_length`` tokens), from the cache when it is there. Every load is checked against
    the torch model on a few texts (shapes other than the export's); runners are shared within the process.
    Returns a callable: tokenizer output (numpy) → outputs by name."""
    if backend == "openvino":
        from .openvino import import_openvino

        import_openvino()
    else:
        _import_onnxruntime()
    import torch

    threads = torch.get_num_threads()
    with _LOCK:
        if weights_sha256:
            settings = {k: v for k, v in model.config.to_dict().items()
                        if not k.startswith("_") and k not in ("transformers_version", "torch_dtype", "dtype")}
            config = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
            folder = cache_dir() / "onnx" / f"{weights_sha256[:24]}-{config.hexdigest()[:8]}-{task}-v{_EXPORT_VERSION}"
        else:  # nothing to key a cache entry on: export for this process only
            folder = Path(tempfile.mkdtemp(prefix="semsearch-onnx-"))
            atexit.register(shutil.rmtree, folder, True)
            log.info("model %s has no weights file to fingerprint; exporting it without caching", name)
        fp32_path = folder / "model-fp32.onnx"
        path = folder / (f"model-{precision}.onnx" if precision == "fp32" or _has_vnni() else
                         f"model-{precision}-reduced-range.onnx")
        key = (backend, precision, str(path if backend == "onnx" else fp32_path), threads, max_length)
        if key not in _RUNNERS:
            if not fp32_path.is_file():
                _export(model, tokenizer, task, fp32_path, name)
            if backend == "openvino":
                from .openvino import calibration_inputs, openvino_runner

                runner = openvino_runner(fp32_path, precision=precision, threads=threads, name=name,
                                         calibration=lambda names: calibration_inputs(tokenizer, task, max_length,
                                                                                      names))
            else:
                if precision == "int8" and not path.is_file():
                    _quantize(fp32_path, path, name)
                runner = OnnxRunner(_session(path, threads), path)
            _check(model, tokenizer, task, runner, precision, name)
            while len(_RUNNERS) >= 8:
                del _RUNNERS[next(iter(_RUNNERS))]
            _RUNNERS[key] = runner
        return _RUNNERS[key]


def _session(path: Path, threads: int):
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load the exported model {path} ({exc}); delete it to export again") from exc


def _has_vnni() -> bool:
    """Whether the CPU has VNNI (int8 dot products): without it, ONNX Runtime's u8×s8 kernels can
    saturate, and weights are quantised with a reduced range instead (ONNX Runtime's advice)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        _import_onnxruntime()
    except ModelError:
        return False
    return True


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"the onnx backend needs ONNX Runtime, which is not installed; {_ONNX_HINT}") from None
    return onnxruntime


def _encode_sample(tokenizer, task: str, sample: Sequence, tensors: str):
    args = dict(padding=True, truncation=True, max_length=32, return_tensors=tensors)  # within any model's limit
    if task == "classifier":
        return tokenizer([f"{s}?" for s in sample], list(sample), **args)
    return tokenizer(list(sample), **args)


def _output_names(model, task: str) -> list[str]:
    if task == "classifier":
        return ["logits"]
    return ["last_hidden_state"] + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])


def _export(model, tokenizer, task: str, path: Path, name: str) -> None:
    """Export with the legacy TorchScript exporter (eager attention: a plain graph ONNX Runtime runs well)."""
    import torch

    enc = _encode_sample(tokenizer, task, _EXPORT_SAMPLE, "pt")
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
    tmp = _temporary(path)
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
    os.replace(tmp, path)
    (path.parent / "export.json").write_text(json.dumps(
        {"model": name, "task": task, "inputs": inputs, "outputs": outputs, "opset": 17,
         "export_version": _EXPORT_VERSION, "torch": torch.__version__}, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s to %s", name, path)


def _quantize(source: Path, path: Path, name: str) -> None:
    """Dynamic int8 quantisation of the matrix multiplications, per output channel (u8 activations, s8 weights)."""
    _import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _temporary(path)
    quiet = logging.getLogger().level
    try:
        logging.getLogger().setLevel(max(quiet, logging.ERROR))  # the quantiser logs advice at WARNING
        quantize_dynamic(str(source), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], reduce_range=not _has_vnni())
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot quantise model {name!r} to int8: {exc}") from exc
    finally:
        logging.getLogger().setLevel(quiet)
    os.replace(tmp, path)
    log.info("quantised %s to int8: %s", name, path)


def _temporary(path: Path) -> Path:
    """A fresh file name next to ``path`` (written, then renamed over ``path``)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _check(model, tokenizer, task: str, runner, precision: str, name: str) -> None:
    """Refuse an exported model that does not reproduce the torch model (relative error on real tokens)."""
    import torch

    enc = _encode_sample(tokenizer, task, _CHECK_SAMPLE, "pt")
    with torch.inference_mode():
        out = model(**enc)
    got = runner({k: v.numpy() for k, v in enc.items()})
    mask = enc["attention_mask"].numpy().astype(bool)
    for key, value in got.items():
        want = getattr(out, key).float().numpy()
        if key == "last_hidden_state":
            want, value = want[mask], value[mask]
        if value.shape != want.shape or not np.isfinite(value).all():
            raise ModelError(f"the exported model {runner.path} gives {key} of shape {value.shape} (or non-finite "
                             f"values) where {name!r} gives {want.shape}; delete it to export again")
        if key == "logits" and precision != "fp32":
            continue  # a handful of logits says little about bf16/int8 error; the benchmark measures their agreement
        error = float(np.linalg.norm(want - value) / max(float(np.linalg.norm(want)), 1e-12))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: relative error %.2g on the check texts", runner.path.name, key, error)
        if not error <= _TOLERANCE[precision]:
            raise ModelError(f"the exported model {runner.path} does not reproduce {name!r} ({key}: relative error "
                             f"{error:.2g} at {precision}); delete it to export again, or use backend torch")
