"""Resident memory of this process: current and peak. Torch-free.

psutil where installed for the current RSS; the peak is the kernel's high-water mark
(VmHWM in /proc/self/status — what ``/usr/bin/time -v`` reports as maximum resident
set size), with getrusage(ru_maxrss) where /proc is missing.
"""
from __future__ import annotations

import resource
import sys


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:
        kb = _status_kb("VmRSS")
        if kb is not None:
            return kb * 1024
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def source() -> str:
    try:
        import psutil  # noqa: F401
        cur = "psutil"
    except ImportError:
        cur = "/proc/self/status VmRSS"
    peak = "/proc/self/status VmHWM" if _status_kb("VmHWM") is not None else "getrusage ru_maxrss"
    return f"current: {cur}; peak: {peak}"
