"""How an exported model runs: the ONNX export and its cache, ONNX Runtime and OpenVINO runners.

A model run on ``onnx`` or ``openvino`` (see :mod:`.precision`) is exported once to ONNX from torch, with
its tokenizer (:mod:`.tokenizer`) and a few facts about it (``export.json``), into a cache folder keyed
by the SHA-256 of its weights and of its ``config.json`` (:func:`model_cache`, under :func:`cache_dir`).
ONNX Runtime's int8 is quantised from that file (dynamic, per output channel), OpenVINO's from it with
NNCF (static, :mod:`.openvino`). Once a folder holds the export, it runs with no torch or transformers
imported: tokenizer from ``tokenizer.json``, the runtime, pooling in numpy. Whether each variant agrees
with fp32 on this CPU is checked once and stored beside it (:mod:`.agreement`).

>>> folder = model_cache(model_dir, weights_sha256, "encoder")                     # doctest: +SKIP
>>> export = read_export(folder) or export_model(model, hf_tokenizer, "encoder", folder, name, facts)  # doctest: +SKIP
>>> run = runner_for(export, "int8", "openvino", max_length=256, name=name)      # doctest: +SKIP
>>> batch = export.tokenizer()(["a text"], padding=True, truncation=True, max_length=256)  # doctest: +SKIP
>>> run(batch)["last_hidden_state"].shape                                          # doctest: +SKIP
(1, 4, 384)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from ..files import cache_dir
from .cpu import has_vnni, physical_cores
from .precision import ONNX_HINT
from .tokenizer import FastTokenizer

__all__ = ["model_cache", "Export", "read_export", "export_model", "runner_for", "OnnxRunner",
           "onnxruntime_available", "runtime_threads", "variant_file", "EXPORT_FILE", "FP32_FILE"]

log = logging.getLogger(__name__)

_EXPORT_VERSION = 2  # bump when the export changes (graph, files, export.json), so stale entries are not reused
EXPORT_FILE = "export.json"
FP32_FILE = "model-fp32.onnx"
_RUNNERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()  # one export at a time: it switches the (shared) model's attention implementation
_EXPORT_SAMPLE = ("a short text", "a somewhat longer text to export the model with")


def model_cache(model_dir: str | os.PathLike, weights_sha256: str | None, task: str) -> Path:
    """The cache folder of a model's exports and checks: by weights and ``config.json`` hash and ``task``
    (``encoder`` or ``classifier``). A model with no weights file to fingerprint gets a folder for this
    process only."""
    if not weights_sha256:
        folder = Path(tempfile.mkdtemp(prefix="semsearch-onnx-"))
        atexit.register(shutil.rmtree, folder, True)
        log.info("model %s has no weights file to fingerprint; its exports and checks are not cached", model_dir)
        return folder
    try:
        config = hashlib.sha256(Path(model_dir, "config.json").read_bytes()).hexdigest()[:8]
    except OSError:
        config = "noconfig"
    return cache_dir() / "onnx" / f"{weights_sha256[:24]}-{config}-{task}-v{_EXPORT_VERSION}"


@dataclass(frozen=True)
class Export:
    """A complete export in its cache folder: ``info`` is its ``export.json``."""

    folder: Path
    info: dict[str, Any]

    @property
    def fp32_path(self) -> Path:
        return self.folder / FP32_FILE

    @property
    def facts(self) -> dict[str, Any]:
        """What the exporting code recorded about the model (dimension, length limit, head, ...)."""
        return self.info.get("facts", {})

    def tokenizer(self) -> FastTokenizer:
        return FastTokenizer.load(self.folder, self.info["tokenizer"])


def read_export(folder: Path) -> Export | None:
    """The export in ``folder``, if it is complete and of this version."""
    try:
        info = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("export_version") != _EXPORT_VERSION or not (folder / FP32_FILE).is_file():
        return None
    return Export(folder, info)


def export_model(model, tokenizer, task: str, folder: Path, name: str, facts: dict[str, Any]) -> Export:
    """The export in ``folder``, made from the torch ``model`` (and its Hugging Face ``tokenizer``) if it is
    not there yet."""
    with _LOCK:
        found = read_export(folder)
        if found is None:
            _export(model, tokenizer, task, folder, name, facts)
            found = read_export(folder)
    return found


def runtime_threads() -> int:
    """Threads an exported runtime uses: torch's count where torch is loaded (the user may have set it),
    else the physical cores this process may run on (torch's default)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else physical_cores()


def runner_for(export: Export, precision: str, backend: str, *, max_length: int, name: str):
    """A callable running ``export`` at ``precision`` on ``backend`` (``onnx``: fp32 or dynamic int8;
    ``openvino``: fp32, bf16 or static int8 calibrated at ``max_length`` tokens): numpy tokenizer output in,
    outputs by name out. Quantised files are made once beside the export; runners are shared in the process."""
    if backend == "openvino":
        from .openvino import import_openvino

        import_openvino()
    else:
        _import_onnxruntime()
    threads = runtime_threads()
    path = variant_file(export.folder, precision, backend)
    key = (backend, precision, str(path), threads, max_length)
    with _LOCK:
        if key not in _RUNNERS:
            if backend == "openvino":
                from .openvino import calibration_inputs, openvino_runner

                tokenizer, task = export.tokenizer(), export.info["task"]
                runner = openvino_runner(export.fp32_path, precision=precision, threads=threads, name=name,
                                         calibration=lambda names: calibration_inputs(tokenizer, task, max_length,
                                                                                      names))
            else:
                if not path.is_file():
                    _quantize(export.fp32_path, path, name)
                runner = OnnxRunner(_session(path, threads), path)
            while len(_RUNNERS) >= 8:
                del _RUNNERS[next(iter(_RUNNERS))]
            _RUNNERS[key] = runner
        return _RUNNERS[key]


def variant_file(folder: Path, precision: str, backend: str) -> Path:
    """The file a variant runs from in an export folder (it may not exist yet): the fp32 export, ONNX
    Runtime's int8 (a reduced range without VNNI) or OpenVINO's int8 (:func:`.openvino.int8_model_path`)."""
    if precision == "fp32" or backend == "openvino" and precision == "bf16":
        return folder / FP32_FILE
    if backend == "openvino":
        from .openvino import int8_model_path

        return int8_model_path(folder / FP32_FILE)
    return folder / ("model-int8.onnx" if has_vnni() else "model-int8-reduced-range.onnx")


class OnnxRunner:
    """An ONNX Runtime session fed with a tokenizer's numpy output; returns the outputs by name."""

    def __init__(self, session, path: Path):
        self.session, self.path = session, path
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]

    def __call__(self, encoding) -> dict[str, np.ndarray]:
        feed = {name: np.asarray(encoding[name], dtype=np.int64) for name in self.inputs}
        return dict(zip(self.outputs, self.session.run(None, feed)))


def _session(path: Path, threads: int):
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    # No busy-waiting between runs: ONNX Runtime's worker threads spin by default after each run, taking a
    # core from the search that follows (FAISS, BM25, SQLite). Measured on 2 cores, one SciFact query at a
    # time: hybrid search p50 22.5 -> 13.7 ms, p95 44 -> 18 ms (benchmarks/int8_backend.py --spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load the exported model {path} ({exc}); delete it to export again") from exc


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
        raise ModelError(f"the onnx backend needs ONNX Runtime, which is not installed; {ONNX_HINT}") from None
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


def _export(model, tokenizer, task: str, folder: Path, name: str, facts: dict[str, Any]) -> None:
    """Export to ``folder/model-fp32.onnx`` with the legacy TorchScript exporter (eager attention: a plain graph
    ONNX Runtime runs well), then the tokenizer, then ``export.json`` (last: it marks the export complete)."""
    import torch

    path = folder / FP32_FILE

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
    settings = FastTokenizer.from_hugging_face(tokenizer).save(folder)
    info = {"model": name, "task": task, "inputs": inputs, "outputs": outputs, "opset": 17,
            "export_version": _EXPORT_VERSION, "torch": torch.__version__, "tokenizer": settings, "facts": facts}
    tmp = _temporary(folder / EXPORT_FILE)
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / EXPORT_FILE)
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
                         op_types_to_quantize=["MatMul"], reduce_range=not has_vnni())
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
