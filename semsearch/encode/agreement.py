"""The self-check of a fast variant: does it agree with fp32 on the CPU it runs on?

A model run at any precision or backend other than torch fp32 (bf16, ONNX Runtime, OpenVINO, int8) is
compared with torch fp32 once per machine and model, on a fixed set of texts derived from the shipped
``semsearch/data/calibration.json`` (the questions, every sentence of the passages on its own, the
passages, and pairs of passages run together: 5 to 208 MiniLM tokens):

- a bi-encoder by the cosine of each text's vector to its fp32 vector (min and mean);
- a cross-encoder by the Pearson correlation of its scores with fp32's, over (question, text) pairs.

Below the floor (:data:`FLOORS`: min cosine 0.98, Pearson 0.99; 0.999 for fp32 exports, which must
reproduce the model) the variant is not used: :func:`settle` falls back to a variant whose vectors mix
with it, or refuses. Why: a runtime's kernels differ by CPU, and one CPU's kernels can break a variant
that passes everywhere else (OpenVINO's bf16 on AMX mis-embedded 3% of texts in int8 models). The result
is cached in ``agreement.json`` beside the export, keyed by the CPU's model and flags, the runtime's
version, the model file and the variant, so later loads cost nothing and need no torch. To use a refused
variant anyway, lower the bf16/int8 floor with ``SEMSEARCH_AGREEMENT_FLOOR`` (``-1`` accepts anything).

>>> fallback("bf16", "torch"), fallback("fp32", "onnx"), fallback("int8", "openvino")
(('fp32', 'torch'), ('fp32', 'torch'), None)
>>> next_best("int8", "openvino")
('int8', 'onnx')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadInput, ModelError
from ..files import atomic_write_text
from .cpu import cpu_key, cpu_model

__all__ = ["Agreement", "AgreementError", "FLOORS", "floor_for", "check_texts", "check_pairs", "runtime_version",
           "agreement_key", "cached_agreement", "save_agreement", "checked", "measure_vectors", "measure_scores",
           "fallback", "next_best", "settle", "report", "AGREEMENT_FILE"]

log = logging.getLogger(__name__)

AGREEMENT_FILE = "agreement.json"
_FORMAT = "semsearch-agreement/1"
CHECK_VERSION = 1  # bump when the texts or the measure change: every cached result is then checked again
#: Least agreement with torch fp32 a variant may show: (min cosine of a bi-encoder's vectors, Pearson of a
#: cross-encoder's scores). fp32 on another runtime must reproduce the model; bf16 and int8 approximate it.
FLOORS = {"fp32": {"encoder": 0.999, "classifier": 0.999}, "bf16": {"encoder": 0.98, "classifier": 0.99},
          "int8": {"encoder": 0.98, "classifier": 0.99}}
#: Every variant, fastest first: :func:`next_best` walks this list.
_BY_SPEED = (("int8", "openvino"), ("int8", "onnx"), ("bf16", "openvino"), ("bf16", "torch"), ("fp32", "openvino"),
             ("fp32", "onnx"), ("fp32", "torch"))


@dataclass(frozen=True)
class Agreement:
    """How a variant agreed with torch fp32 on the check texts, on this machine."""

    task: str  # "encoder" or "classifier"
    precision: str
    backend: str
    texts: int
    min_cosine: float | None = None
    mean_cosine: float | None = None
    below_095: int | None = None  # texts whose vector is below cosine 0.95 to fp32
    pearson: float | None = None
    cpu: str = ""
    runtime: str = ""
    checked: str = ""
    seconds: float = 0.0

    @property
    def value(self) -> float:
        """The number held to the floor: min cosine (bi-encoder) or Pearson (cross-encoder)."""
        return float(self.min_cosine if self.task == "encoder" else self.pearson)

    @property
    def floor(self) -> float:
        """The least :attr:`value` this variant may show (:data:`FLOORS`, or ``$SEMSEARCH_AGREEMENT_FLOOR``)."""
        return floor_for(self.precision, self.task)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.value) and self.value >= self.floor)

    def summary(self) -> str:
        """One line: the numbers, against the floor."""
        if self.task == "encoder":
            got = (f"min cosine {self.min_cosine:.4f}, mean {self.mean_cosine:.4f}, {self.below_095} below 0.95, "
                   f"on {self.texts} texts")
        else:
            got = f"Pearson {self.pearson:.4f} on {self.texts} pairs"
        return f"{got} (floor {self.floor}; {self.runtime} on {self.cpu})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def report(precision: str, backend: str, found: Agreement | None) -> dict[str, Any]:
    """What ``semsearch info`` shows of a variant's check on this CPU: its status, numbers and one line."""
    entry: dict[str, Any] = {"precision": precision, "backend": backend}
    if (precision, backend) == ("fp32", "torch"):
        return {**entry, "status": "reference", "summary": "fp32 on torch is the reference; nothing to check"}
    if found is None:
        return {**entry, "status": "not checked", "summary": f"not checked on this CPU ({cpu_model()}) yet; it is "
                                                            "checked when the model first loads here"}
    status = "passed" if found.passed else "failed"
    return {**entry, **found.to_dict(), "floor": found.floor, "status": status,
            "summary": f"{status}: {found.summary()}, checked {found.checked}"}


def floor_for(precision: str, task: str) -> float:
    """The floor of a variant: :data:`FLOORS`; for bf16 and int8, ``$SEMSEARCH_AGREEMENT_FLOOR`` if set."""
    override = os.environ.get("SEMSEARCH_AGREEMENT_FLOOR")
    if override and precision != "fp32":
        try:
            return float(override)
        except ValueError:
            raise BadInput(f"SEMSEARCH_AGREEMENT_FLOOR must be a number, got {override!r}") from None
    return FLOORS[precision][task]


class AgreementError(ModelError):
    """A variant disagrees with fp32 on this CPU by more than the floor allows."""

    def __init__(self, message: str, agreement: Agreement):
        super().__init__(message)
        self.agreement = agreement


# --- the texts ------------------------------------------------------------------------------------


def _calibration() -> tuple[dict[str, list[str]], str]:
    raw = resources.files("semsearch").joinpath("data", "calibration.json").read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


@lru_cache(maxsize=1)
def check_texts() -> tuple[str, ...]:
    """The bi-encoder's check texts: questions, every passage sentence alone, passages, passage pairs."""
    texts, _ = _calibration()
    queries, passages = texts["queries"], texts["passages"]
    n = len(passages)
    sentences = [s for p in passages for s in re.split(r"(?<=[.!?])\s+", p) if s.strip()]
    return tuple(queries + sentences + passages + [f"{passages[i]} {passages[(i + 5) % n]}" for i in range(n)])


@lru_cache(maxsize=1)
def check_pairs() -> tuple[tuple[str, str], ...]:
    """The cross-encoder's check pairs: each question with a sentence, a passage, and a passage pair."""
    texts = check_texts()
    raw, _ = _calibration()
    queries = raw["queries"]
    others = texts[len(queries):]
    return tuple((q, others[(7 * i + j * 41) % len(others)]) for i, q in enumerate(queries) for j in range(3))


def _texts_sha() -> str:
    return _calibration()[1][:12]


# --- what a result is keyed by ----------------------------------------------------------------------


def runtime_version(backend: str) -> str:
    """``name version`` of the runtime a backend runs on (read from the installed package, not imported)."""
    package = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[backend]
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"{package} ?"


def agreement_key(task: str, precision: str, backend: str, *, pooling: str | None, max_length: int,
                  model_file: Path | None) -> str:
    """The cache key of one check: variant, model settings, model file (size and time), CPU, runtime, texts."""
    stamp = "-"
    if model_file is not None:
        files = [model_file] + ([model_file.with_suffix(".bin")] if model_file.suffix == ".xml" else [])
        stamp = ",".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return "|".join([task, precision, backend, f"pooling={pooling or '-'}", f"max_length={max_length}",
                     f"file={stamp}", f"cpu={cpu_key()}", runtime_version(backend), f"texts={_texts_sha()}",
                     f"v{CHECK_VERSION}"])


def _same_but_file(old: str, new: str) -> bool:
    """Whether ``old`` is the check of an earlier version of ``new``'s model file (stale once it is replaced)."""
    def names(field: str) -> list[str]:  # "file=name:size:mtime,name2:size:mtime" -> the names
        return [f.rsplit(":", 2)[0] for f in field[len("file="):].split(",")]

    a, b = old.split("|"), new.split("|")
    return a != b and len(a) == len(b) and all(
        names(x) == names(y) if x.startswith("file=") else x == y for x, y in zip(a, b))


def cached_agreement(folder: Path | None, key: str) -> Agreement | None:
    """The result stored under ``key`` in ``folder``'s ``agreement.json``, if any."""
    if folder is None:
        return None
    path = Path(folder) / AGREEMENT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = data["checks"][key] if data.get("format") == _FORMAT else None
        return Agreement(**entry) if entry else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checked(folder: Path | None, key: str, measure: Callable[[], Agreement]) -> Agreement:
    """The stored result under ``key``, else ``measure()``'d now and stored."""
    found = cached_agreement(folder, key)
    if found is None:
        found = measure()
        log.info("checked against fp32 on this CPU: %s at %s on %s: %s", found.task, found.precision, found.backend,
                 found.summary())
        save_agreement(folder, key, found)
    return found


def save_agreement(folder: Path | None, key: str, agreement: Agreement) -> None:
    """Store ``agreement`` under ``key`` (read-modify-replace; a lost race only means checking again)."""
    if folder is None:
        return
    path = Path(folder) / AGREEMENT_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            checks = data["checks"] if data.get("format") == _FORMAT else {}
        except (OSError, ValueError, KeyError):
            checks = {}
        checks = {k: v for k, v in checks.items() if not _same_but_file(k, key)}
        checks[key] = agreement.to_dict()
        atomic_write_text(path, json.dumps({"format": _FORMAT, "checks": checks}, indent=1, sort_keys=True))
    except OSError as exc:  # a read-only cache: the check runs again next time
        log.warning("cannot store the agreement check in %s: %s", path, exc)


# --- measuring ----------------------------------------------------------------------------------------


def _stamp(task: str, precision: str, backend: str, texts: int, started: float) -> dict[str, Any]:
    return {"task": task, "precision": precision, "backend": backend, "texts": texts, "cpu": cpu_model(),
            "runtime": runtime_version(backend),
            "checked": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 2)}


def measure_vectors(reference: Callable[[Sequence[str]], np.ndarray], variant: Callable[[Sequence[str]], np.ndarray],
                    precision: str, backend: str) -> Agreement:
    """Cosines of ``variant``'s vectors to ``reference``'s (torch fp32) on :func:`check_texts`."""
    started = time.perf_counter()
    texts = list(check_texts())
    want, got = np.asarray(reference(texts), np.float64), np.asarray(variant(texts), np.float64)
    if got.shape != want.shape:
        raise ModelError(f"the {precision} {backend} model gives vectors of shape {got.shape}, fp32 {want.shape}")
    norms = np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1)
    cos = np.where(norms > 0, (want * got).sum(1) / np.maximum(norms, 1e-30), 0.0)
    cos = np.where(np.isfinite(cos), cos, -1.0)  # NaN or infinite vectors count as the worst disagreement
    return Agreement(min_cosine=round(float(cos.min()), 6), mean_cosine=round(float(cos.mean()), 6),
                     below_095=int((cos < 0.95).sum()), **_stamp("encoder", precision, backend, len(texts), started))


def measure_scores(reference: Callable[[Sequence[tuple[str, str]]], np.ndarray],
                   variant: Callable[[Sequence[tuple[str, str]]], np.ndarray], precision: str,
                   backend: str) -> Agreement:
    """Pearson correlation of ``variant``'s scores with ``reference``'s (torch fp32) on :func:`check_pairs`."""
    started = time.perf_counter()
    pairs = list(check_pairs())
    want, got = np.asarray(reference(pairs), np.float64), np.asarray(variant(pairs), np.float64)
    if not np.isfinite(got).all():
        pearson = -1.0
    elif want.std() == 0 or got.std() == 0:  # a constant scorer agrees only with a constant reference
        pearson = 1.0 if np.allclose(want, got, rtol=1e-3, atol=1e-5) else 0.0
    else:
        pearson = float(np.corrcoef(want, got)[0, 1])
    return Agreement(pearson=round(pearson, 6), **_stamp("classifier", precision, backend, len(pairs), started))


# --- what to do below the floor ------------------------------------------------------------------------


def fallback(precision: str, backend: str) -> tuple[str, str] | None:
    """The variant to use instead when ``precision``/``backend`` fails its check *and* whose vectors (or
    scores) mix with it: bf16 → fp32 on the same backend's family, exported fp32 → torch fp32; ``None`` for
    int8, whose vectors mix with nothing else."""
    if precision == "int8":
        return None
    if (precision, backend) == ("bf16", "openvino"):
        return "fp32", "openvino"
    if (precision, backend) == ("fp32", "torch"):
        return None
    return "fp32", "torch"


def next_best(precision: str, backend: str, runs: Callable[[str, str], bool] = lambda p, b: True
              ) -> tuple[str, str]:
    """The next-fastest variant after ``precision``/``backend`` that ``runs`` here (ends at torch fp32)."""
    after = _BY_SPEED[_BY_SPEED.index((precision, backend)) + 1:]
    return next((v for v in after if runs(*v)), ("fp32", "torch"))


def settle(start: Callable[[str, str], Agreement | None], precision: str, backend: str, what: str,
           runs: Callable[[str, str], bool]) -> tuple[str, str, Agreement | None]:
    """Start a model at ``precision``/``backend`` (``start`` sets it up and returns its agreement with fp32, or
    ``None`` for fp32 on torch, the reference). Below the floor, fall back with a warning to the variant whose
    vectors mix with it (:func:`fallback`), and start that; where there is none (int8), raise
    :class:`AgreementError` with the numbers and the next-fastest variant that ``runs`` here."""
    while True:
        agreement = start(precision, backend)
        if agreement is None or agreement.passed:
            return precision, backend, agreement
        instead = fallback(precision, backend)
        if instead is None:
            best = next_best(precision, backend, runs)
            rebuild = f"; an index built at {precision} on {backend} must be rebuilt to switch" \
                if agreement.task == "encoder" else ""
            raise AgreementError(
                f"{what} at {precision} on {backend} disagrees with fp32 on this CPU: {agreement.summary()}; the "
                f"next fastest variant is {best[0]} on {best[1]} (--precision {best[0]} --backend {best[1]}{rebuild})",
                agreement)
        log.warning("%s at %s on %s disagrees with fp32 on this CPU (%s); using %s on %s instead, whose vectors and "
                    "scores mix with it", what, precision, backend, agreement.summary(), *instead)
        precision, backend = instead
