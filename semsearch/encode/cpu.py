"""What this CPU is and can do, read from ``/proc/cpuinfo`` (no torch): its model, its feature flags.

Runtimes choose kernels by these flags, so the self-check of a fast variant (:mod:`.agreement`) is keyed
by them, and ONNX Runtime's int8 needs to know about VNNI.

>>> len(cpu_key()) == 12
True
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache

__all__ = ["cpu_model", "cpu_flags", "cpu_key", "has_vnni", "has_bf16_instructions", "physical_cores"]


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC 9R14`` or ``Intel(R) Xeon(R) Platinum 8488C``."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512_bf16``, ``amx_int8``, …); empty where the OS does not say."""
    return _cpuinfo()[1]


def cpu_key() -> str:
    """A short hash of the model name and every flag: two machines with the same key run the same kernels."""
    model, flags = _cpuinfo()
    return hashlib.sha256(f"{model}\n{' '.join(sorted(flags))}".encode()).hexdigest()[:12]


def has_vnni() -> bool:
    """Whether the CPU has VNNI (int8 dot products): without it, ONNX Runtime's u8×s8 kernels can
    saturate, and weights are quantised with a reduced range instead (ONNX Runtime's advice)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def has_bf16_instructions() -> bool:
    """Whether the CPU has native bfloat16 instructions (AVX-512 BF16 or AMX), by its flags alone."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads counted once), as torch counts
    its default threads; the CPU count where ``/proc/cpuinfo`` does not say."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, package = set(), None, "0"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    package = value
                elif key == "core id" and cpu in allowed:
                    cores.add((package, value))
    except (OSError, ValueError):
        pass
    return max(1, len(cores) or len(allowed))
