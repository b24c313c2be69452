"""The ``openvino`` backend: the exported ONNX model run by OpenVINO, at fp32, bf16 or static int8.

- ``fp32`` / ``bf16``: OpenVINO's CPU plugin with that inference precision (bf16 only where the CPU
  has it natively).
- ``int8``: weights *and* activations in int8 (static quantisation by NNCF, SmoothQuant and bias
  correction included). Activation ranges are calibrated once per model on a fixed set of texts shipped
  with semsearch (``semsearch/data/calibration.json``: questions, claims, reviews and passages from many
  fields), so the quantised model depends only on the model, that file and the NNCF version, never on the
  corpus; layers left in floating point run in f32 (in bf16 they broke agreement with fp32 on CPUs with
  AMX). On all-MiniLM-L6-v2 and the SciFact reranker this is both faster and closer to fp32 than ONNX
  Runtime's dynamic int8 (docs/benchmarks/inference.md).

Quantised models are cached next to the ONNX export (see :func:`semsearch.files.cache_dir`) as
OpenVINO IR files (XML + weights), and checked against fp32 once per CPU (:mod:`.agreement`).
Needs ``pip install 'semsearch[openvino]'`` (OpenVINO and NNCF).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .precision import OPENVINO_HINT

__all__ = ["OpenVinoRunner", "openvino_runner", "openvino_available", "import_openvino", "calibration_inputs",
           "int8_model_path"]

log = logging.getLogger(__name__)

_CALIBRATION_BATCH = 8


class OpenVinoRunner:
    """An OpenVINO compiled model fed with a tokenizer's numpy output; returns the outputs by name.
    Calls are serialised (an infer request runs one batch at a time)."""

    def __init__(self, compiled, path: Path):
        self.compiled, self.path = compiled, path
        self.inputs = [next(iter(p.get_names())) for p in compiled.inputs]
        self.outputs = [next(iter(p.get_names())) for p in compiled.outputs]
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, encoding) -> dict[str, np.ndarray]:
        feed = {name: np.asarray(encoding[name], dtype=np.int64) for name in self.inputs}
        with self._lock:
            result = self._request.infer(feed)
            return {name: np.array(result[port]) for name, port in zip(self.outputs, self.compiled.outputs)}


def openvino_available() -> bool:
    """Whether OpenVINO can be imported here."""
    try:
        import_openvino()
    except ModelError:
        return False
    return True


def openvino_runner(fp32_onnx: Path, *, precision: str, threads: int, calibration, name: str) -> OpenVinoRunner:
    """A runner for the exported model ``fp32_onnx`` at ``precision``; for int8 the model is quantised
    (once, then cached next to the export) on ``calibration(input_names)``: a list of model inputs."""
    source = fp32_onnx
    if precision == "int8":
        source = int8_model_path(fp32_onnx)
        if not source.is_file():
            _quantize(fp32_onnx, source, calibration, name)
    # int8 models keep their floating-point layers in f32: with bf16 there, OpenVINO's AMX kernels mis-embedded
    # 3% of texts (min cosine 0.56 to fp32 on an Intel Xeon with AMX; f32 there: min 0.988).
    hint = "bf16" if precision == "bf16" else "f32"
    try:  # CACHE_DIR: OpenVINO keeps the compiled model there (keyed by model, settings and device), so the next
        # process imports it instead of compiling again (0.48 s -> about 0.05 s for MiniLM int8)
        compiled = _core().compile_model(str(source), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(fp32_onnx.parent / "openvino-compiled")})
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelError(f"OpenVINO cannot load {source} ({exc}); delete it to export again") from exc
    log.info("OpenVINO runs %s at %s (%s inference precision, %d threads)", name, precision, hint, threads)
    return OpenVinoRunner(compiled, source)


def int8_model_path(fp32_onnx: Path) -> Path:
    """Where the static int8 model of an export lives: named after the calibration file's hash."""
    return fp32_onnx.parent / f"model-int8-openvino-{calibration_sha256()[:12]}.xml"


def calibration_inputs(tokenizer, task: str, max_length: int, input_names) -> list[dict[str, np.ndarray]]:
    """Model inputs built from the shipped calibration texts: for an ``encoder``, the questions, the
    passages and pairs of passages run together (short to long); for a ``classifier``, (question,
    passage) and (question, two passages) pairs. Batches of 8, cut at ``max_length`` tokens."""
    texts = _calibration_texts()
    queries, passages = texts["queries"], texts["passages"]
    n = len(passages)
    long = [f"{passages[i]} {passages[(i + 7) % n]}" for i in range(n)]
    if task == "classifier":
        items = [(q, passages[i % n]) for i, q in enumerate(queries)] + \
                [(q, long[(i + 3) % n]) for i, q in enumerate(queries)]
    else:
        items = queries + passages + long
    batches = []
    for start in range(0, len(items), _CALIBRATION_BATCH):
        chunk = items[start:start + _CALIBRATION_BATCH]
        if task == "classifier":
            enc = tokenizer([q for q, _ in chunk], [p for _, p in chunk], padding=True, truncation=True,
                            max_length=max_length, return_tensors="np")
        else:
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        batches.append({k: np.asarray(enc[k], dtype=np.int64) for k in input_names})
    return batches


@lru_cache(maxsize=1)
def calibration_sha256() -> str:
    """SHA-256 of the calibration file: part of an int8 model's file name, so a new file means a new model."""
    return hashlib.sha256(_calibration_bytes()).hexdigest()


def _calibration_bytes() -> bytes:
    return resources.files("semsearch").joinpath("data", "calibration.json").read_bytes()


def _calibration_texts() -> dict[str, list[str]]:
    return json.loads(_calibration_bytes())


def _quantize(source: Path, path: Path, calibration, name: str) -> None:
    """Static int8 quantisation with NNCF (transformer preset: SmoothQuant, no quantisers on LayerNorm/GELU
    inputs) on ``calibration(input_names)``, saved as OpenVINO IR in a staging folder and then renamed into
    place (weights first)."""
    ov = import_openvino()
    try:
        import nncf
    except ImportError:
        raise ModelError(f"int8 on OpenVINO needs NNCF, which is not installed; {OPENVINO_HINT}") from None

    model = _core().read_model(str(source))
    batches = calibration([next(iter(p.get_names())) for p in model.inputs])
    log.info("quantising %s to int8 with NNCF on %d calibration batches (once; cached in %s)", name,
             len(batches), path.parent)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    tmp = staging / "model.xml"
    try:
        # NNCF draws progress bars and logs on stdout; keep stdout for results (`query --json`).
        with contextlib.redirect_stdout(sys.stderr):
            nncf_log.setLevel(max(level, logging.WARNING) if not log.isEnabledFor(logging.DEBUG) else level)
            quantized = nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(batches))
            ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))  # the weights first: the XML marks it done
        os.replace(tmp, path)
    except Exception as exc:  # NNCF and OpenVINO raise many types
        raise ModelError(f"cannot quantise model {name!r} to int8 with NNCF: {exc}") from exc
    finally:
        nncf_log.setLevel(level)
        shutil.rmtree(staging, ignore_errors=True)


@lru_cache(maxsize=1)
def _core():
    return import_openvino().Core()


def import_openvino() -> Any:
    """The ``openvino`` module, or a :class:`ModelError` naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise ModelError(f"the openvino backend needs OpenVINO, which is not installed; {OPENVINO_HINT}") from None
    return openvino
