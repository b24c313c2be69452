"""Which precision (fp32, bf16, int8) on which backend (torch, ONNX Runtime, OpenVINO), and which vectors mix.

Shared by the bi-encoder and the cross-encoder.

- ``fp32`` on ``torch``: the reference.
- ``bf16`` on ``torch``: bfloat16 autocast; fast where the CPU has native bf16
  (AVX-512 BF16 or AMX). On all-MiniLM-L6-v2 vectors keep cosine ≥ 0.9999 to fp32.
- ``fp32`` on ``onnx``: the model exported to ONNX and run by ONNX Runtime.
- ``int8`` on ``onnx``: the exported model with its matrix weights quantised to int8
  (dynamic quantisation, per output channel); activations are quantised per batch,
  so a text's vector depends slightly on which texts share its batch.
- ``fp32``, ``bf16`` and ``int8`` on ``openvino``: the exported model run by OpenVINO; its int8 is
  static (weights and activations, calibrated once on texts shipped with semsearch); see
  :mod:`semsearch.encode.openvino`.

``int8`` with ``backend="auto"`` runs where int8 is fastest on this CPU (:func:`int8_backend`): OpenVINO's
static int8 where the CPU has int8 dot-product instructions (VNNI, AMX) and OpenVINO is installed, ONNX
Runtime's dynamic int8 elsewhere. fp32 and bf16 vectors share an index whatever the backend; int8 vectors
only with int8 vectors of the same backend (:func:`same_vectors`). How the exported variants run: :mod:`semsearch.encode.runtime`;
how each is checked against fp32 on this CPU: :mod:`semsearch.encode.agreement`.

>>> resolve_precision("int8", "onnx")
('int8', 'onnx')
>>> resolve_precision("int8", "openvino")
('int8', 'openvino')
>>> resolve_precision("bf16", "onnx")
Traceback (most recent call last):
semsearch.errors.BadInput: precision 'bf16' does not run on backend 'onnx'; it runs: fp32, int8
"""

from __future__ import annotations

import contextlib
import importlib
import logging

from ..errors import BadInput, ModelError
from .cpu import has_bf16_instructions, has_vnni

__all__ = ["PRECISIONS", "BACKENDS", "RUNS", "resolve_precision", "runnable_here", "fill_in", "vector_kind",
           "same_vectors", "autocast", "native_bf16", "runtime_installed", "runs_here", "int8_backend", "ONNX_HINT",
           "OPENVINO_HINT"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("auto", "torch", "onnx", "openvino")
#: The precisions each backend runs.
RUNS = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
#: Vector kinds (:func:`vector_kind`) that may share an index (measured by benchmarks/inference_speed.py:
#: corpus and queries embedded at different kinds lose no measurable nDCG@10 on SciFact).
_MIXABLE = ({"fp32", "bf16"},)
ONNX_HINT = "install it with `pip install 'semsearch[onnx]'`"
OPENVINO_HINT = "install it with `pip install 'semsearch[openvino]'`"


def native_bf16(backend: str) -> bool:
    """Whether bf16 runs natively for ``backend``: torch's own (oneDNN's) check on torch, the CPU's
    AVX-512 BF16 / AMX flags elsewhere (so an exported runtime does not import torch to find out)."""
    if backend != "torch":
        return has_bf16_instructions()
    from .models import bf16_supported

    return bf16_supported()


def runtime_installed(backend: str) -> bool:
    """Whether the runtime a backend needs imports here (the backend needs it imported anyway)."""
    try:
        importlib.import_module({"onnx": "onnxruntime", "openvino": "openvino"}.get(backend, backend))
    except ImportError:
        return False
    return True


def int8_backend() -> str:
    """Where ``int8`` runs fastest here: ``"openvino"`` (static int8) where the CPU has int8 dot-product
    instructions (VNNI or AMX) and OpenVINO is installed, or where ONNX Runtime is not; ``"onnx"`` (dynamic
    int8) elsewhere. Measured with all-MiniLM-L6-v2 on 2 cores (docs/benchmarks/inference.md): on an AMD
    Zen 4 (AVX-512 VNNI) OpenVINO int8 embeds abstracts 3.4x as fast as sentence-transformers against ONNX
    Runtime int8's 2.4x; on an AVX2-only Zen 3 OpenVINO int8 is no faster than fp32 (1.02x), ONNX Runtime
    int8 1.55x, and one query takes 4.9 ms against OpenVINO int8's 8.2 (benchmarks/int8_backend.py)."""
    if has_vnni() and runtime_installed("openvino"):
        return "openvino"
    return "openvino" if not runtime_installed("onnx") and runtime_installed("openvino") else "onnx"


def resolve_precision(precision: str | None = "auto", backend: str | None = "auto") -> tuple[str, str]:
    """The (precision, backend) pair to run: ``auto`` picks bf16 on torch where the CPU has native
    bf16, else fp32; int8 with the ``auto`` backend runs where it is fastest here (:func:`int8_backend`)."""
    precision, backend = precision or "auto", backend or "auto"
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; valid values are: {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; valid values are: {', '.join(BACKENDS)}")
    if precision == "auto":
        precision = "fp32" if backend == "onnx" or not native_bf16(backend if backend != "auto" else "torch") \
            else "bf16"
    if backend == "auto":
        backend = int8_backend() if precision == "int8" else "torch"
    if precision not in RUNS[backend]:
        raise BadInput(f"precision {precision!r} does not run on backend {backend!r}; "
                       f"it runs: {', '.join(RUNS[backend])}")
    if precision == "bf16" and not native_bf16(backend):
        log.warning("this CPU has no native bfloat16; bf16 runs emulated and is slower than fp32")
    return precision, backend


def runnable_here(precision: str, backend: str, what: str) -> tuple[str, str]:
    """A recorded precision/backend, or the nearest one that runs here and gives the same vectors/scores
    (bf16 without native bf16 → fp32; fp32 on ONNX Runtime without it → fp32 on torch), with a warning."""
    if precision == "bf16" and not native_bf16(backend):
        log.warning("%s was recorded in bf16, which this CPU lacks; using fp32", what)
        return "fp32", "torch"
    if backend == "onnx" and not runtime_installed("onnx"):
        if precision == "fp32":
            log.warning("%s was recorded with ONNX Runtime, which is not installed; using torch fp32", what)
            return "fp32", "torch"
        raise ModelError(f"{what} was recorded in {precision}, which needs ONNX Runtime; {ONNX_HINT}")
    if backend == "openvino" and not runtime_installed("openvino"):
        if precision in RUNS["torch"]:
            log.warning("%s was recorded with OpenVINO, which is not installed; using torch %s", what, precision)
            return precision, "torch"
        raise ModelError(f"{what} was recorded in {precision} on OpenVINO, which is not installed; {OPENVINO_HINT}")
    return precision, backend


def fill_in(recorded: tuple[str, str], precision: str | None, backend: str | None) -> tuple[str, str]:
    """The precision/backend asked for, with what was not asked taken from ``recorded`` where it fits.

    >>> fill_in(("bf16", "torch"), "fp32", None), fill_in(("bf16", "torch"), None, "onnx")
    (('fp32', 'torch'), ('auto', 'onnx'))
    """
    if precision is None and backend is None:
        return recorded
    if precision is None:
        precision = recorded[0] if recorded[0] in RUNS.get(backend, ()) else "auto"
    if backend is None:  # the recorded backend, where it runs this precision and is installed
        fits = precision in RUNS.get(recorded[1], ()) and (recorded[1] == "torch" or runtime_installed(recorded[1]))
        backend = recorded[1] if fits else "auto"
    return precision, backend


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


def runs_here(precision: str, backend: str) -> bool:
    """Whether ``precision`` on ``backend`` can run here: its runtime is installed, and bf16 is native."""
    return runtime_installed(backend) and (precision != "bf16" or native_bf16(backend))
