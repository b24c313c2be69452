"""What every benchmark records about the machine it ran on: ``lscpu``'s model and flags, cores, versions.

Speeds and even agreement depend on the CPU (AMX kernels broke OpenVINO's bf16 in int8 models on Intel
Xeons but not on AMD Zen 4), so a number without its CPU says little.

    from machine import machine, machine_line
    result = {"machine": machine(), ...}
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

PACKAGES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "openvino", "nncf", "faiss-cpu", "bm25s")
#: Flags that decide which kernels the runtimes pick; the report line names those present.
KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine() -> dict:
    """The CPU (lscpu's model name and every flag), cores this process may use, and package versions."""
    info = _lscpu()
    flags = info.get("Flags", "").split()
    if not flags:  # no lscpu: read the kernel's list
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
        except OSError:
            flags = []
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": info.get("Model name") or platform.processor() or platform.machine(), "flags": flags,
            "key_flags": [f for f in KEY_FLAGS if f in flags], "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "packages": versions}


def machine_line(m: dict) -> str:
    """One line for a report: CPU, cores, the flags that matter, the runtimes' versions."""
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return f"{m['cpu']}, {m['cores']} cores, flags: {' '.join(m['key_flags']) or 'none of note'}; {packages}"
