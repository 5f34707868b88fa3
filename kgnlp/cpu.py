"""The CPU this process runs on: model name and the vector ISA that decides kernel speed.

Speed figures on these machines differ by CPU (an AVX-512/AMX Intel vs an AVX2-only EPYC), so
every benchmark and ``/health/ready`` report this, and a cached engine choice is keyed by it.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

__all__ = ["cpu_info", "cpu_key"]

# the flags that change which kernels run fast (in /proc/cpuinfo spelling)
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
             "amx_bf16", "asimd", "sve")  # fmt: skip


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """``{"model", "isa", "cores", "machine"}`` of this machine (``isa``: the flags above it has)."""
    model, flags = platform.processor() or "unknown", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and model in ("unknown", "", platform.processor()):
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags], "cores": cores, "machine": platform.machine()}


def cpu_key() -> str:
    """One line naming the CPU, its ISA and core count (what a cached speed measurement holds for)."""
    info = cpu_info()
    return f"{info['model']} | {' '.join(info['isa'])} | {info['cores']} cores"  # type: ignore[arg-type]
