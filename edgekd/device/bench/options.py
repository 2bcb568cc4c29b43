"""How ``edgekd bench`` measures: one typed, checked options object. Torch-free, stdlib only.

The API takes typed values (lists of thread counts, numbers); only the CLI parses strings.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from typing import Any

from edgekd.core.errors import ConfigError

#: max_runs caps the timed calls of a fast model (a 1 µs call would reach 2 s after 2 million):
#: 100,000 samples give stable percentiles and keep the stored timings (8 bytes each) under 1 MB
#: of the child's memory, which is measured alongside
DEFAULTS: dict[str, Any] = {"warmup": 10, "warmup_seconds": 0.5, "runs": 100, "min_seconds": 2.0, "max_runs": 100_000}

#: the largest sane value of each numeric option: beyond it a value is a typo, not a wish (--threads
#: 100000 hung a worker, --warmup-seconds inf warmed up forever); threads: THREADS_PER_CORE × cores
LIMITS: dict[str, float] = {"batch": 65536, "warmup": 1e6, "warmup_seconds": 3600.0, "runs": 1e7,
          "min_seconds": 3600.0, "max_runs": 1e7, "repeat": 1000, "timeout": 86400.0, "seed": 2**32 - 1}
THREADS_PER_CORE = 4
#: what ``profile`` does, as the command line's help says it
PROFILE_HELP = ("Where each file's time goes, per op, at the first threads and batch setting, profiled after its "
                "timing in the same child: onnxruntime's profiler per node (raw, and less its own cost per node); "
                "TFLite: the ops the XNNPACK delegate did not take. Top ops after the table, all in bench.json.")


def cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> list[int]:
    """1 and all cores (just [1] on a single-core device)."""
    return sorted({1, cores()})


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how; checked when made, so a bad value fails before anything runs.

    Warm-up runs until both ``warmup`` calls and ``warmup_seconds`` have passed; the timed loop
    until both ``runs`` calls and ``min_seconds``, or ``max_runs`` calls, whichever comes first.
    ``repeat``: fresh child processes per setting (the one with the median p50 is kept).
    ``data``: eval data (x, y) instead of the bundle's own; ``runtime``: only models of this
    runtime (a bundle) or open the file with it; ``providers``: onnxruntime execution providers.
    """
    threads: list[int] | None = None          # None: 1 and all cores
    batch: list[int] | None = None            # None: [1]
    warmup: int = DEFAULTS["warmup"]
    warmup_seconds: float = DEFAULTS["warmup_seconds"]
    runs: int = DEFAULTS["runs"]
    min_seconds: float = DEFAULTS["min_seconds"]
    max_runs: int = DEFAULTS["max_runs"]
    repeat: int = 1
    seed: int = 0
    timeout: float | None = None              # seconds per child process; None: no limit
    data: str | os.PathLike | None = None
    runtime: str | None = None
    providers: list[str] | None = None
    profile: bool = False                     # per-op profile of each file, at the first setting

    def __post_init__(self):
        object.__setattr__(self, "threads", _counts(self.threads, "threads") or default_threads())
        object.__setattr__(self, "batch", _counts(self.batch, "batch") or [1])
        for name, minimum, whole in (("warmup", 0, True), ("warmup_seconds", 0, False), ("runs", 1, True),
                                     ("min_seconds", 0, False), ("max_runs", self.runs, True),
                                     ("repeat", 1, True), ("seed", 0, True)):
            _check_number(name, getattr(self, name), minimum, whole)
        if self.timeout is not None:
            _check_number("timeout", self.timeout, 1)
        if not isinstance(self.profile, bool):
            raise ConfigError(f"profile must be true or false, got {self.profile!r}")
        if self.providers is not None and not _strings(self.providers):
            raise ConfigError(f"providers must be a list of names, got {self.providers!r}")

    @property
    def grid(self) -> tuple[list[int], list[int]]:
        """(threads, batch sizes) to measure: never None once ``__post_init__`` has filled the defaults."""
        assert self.threads is not None and self.batch is not None
        return self.threads, self.batch

    def worker_fields(self) -> dict:
        """The fields every child process's request carries."""
        return {k: v for k, v in asdict(self).items() if k in (*DEFAULTS, "providers", "seed")}


def _counts(values, what: str) -> list[int] | None:
    """Each a whole number from 1 to LIMITS[what] (threads: THREADS_PER_CORE × the cores here, not in LIMITS),
    repeats dropped; None stays None (the default)."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ConfigError(f"{what} must be a list of whole numbers, got {values!r}",
                          hint="the command line takes '1,4'; the Python API takes [1, 4]")
    top: float
    if what == "threads":
        top, why = THREADS_PER_CORE * cores(), f" ({THREADS_PER_CORE} × the {cores()} cores here)"
    else:
        top, why = LIMITS[what], ""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ConfigError(f"{what} must be whole numbers, got {v!r}")
        if not 1 <= int(v) <= top:
            raise ConfigError(f"{what} must be at least 1 and at most {top}{why}, got {v}")
    if not values:
        raise ConfigError(f"{what} is empty")
    return list(dict.fromkeys(int(v) for v in values))


def _strings(values) -> bool:
    return isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values)


def _check_number(name: str, value, minimum: float, whole: bool = False) -> None:
    """A finite number (a whole one for counts) from ``minimum`` to LIMITS[name]."""
    fine = isinstance(value, numbers.Integral if whole else numbers.Real) and not isinstance(value, bool) \
        and (isinstance(value, numbers.Integral) or math.isfinite(value))
    if not (fine and minimum <= value <= LIMITS[name]):
        raise ConfigError(f"{name} must be at least {_shown(minimum)} and at most {_shown(LIMITS[name])}"
                          f"{' (a whole number)' if whole else ''}, got {value}")


def _shown(bound: float) -> str:
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"
