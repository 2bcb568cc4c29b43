"""bench.json: the document ``edgekd bench`` writes and the report, ``init-budget`` and the CI gate
read. Torch-free.

The TypedDicts below are the document's shape (the README's bench.json section is tested against
them); :func:`from_json` is the one reader's check and :func:`to_json` the one writer's text. The
check covers every field a reader relies on (the gate's baseline checks, init-budget's proposal),
so a bad file fails before anything is measured; the rest is informative and left as written.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TypedDict

from edgekd.core.errors import ConfigError
from edgekd.core.schema.fields import COUNT, FRACTION, LIST, OBJECT, OBJECTS, POSITIVE, POSITIVES, TEXT, Invalid, field
from edgekd.core.schema.jsonfile import check_version, parse_json, read_json

SCHEMA = "edgekd.bench"


class Eval(TypedDict, total=False):
    file: str
    samples: int
    sample_shape: list[int]
    sha256: str


class Target(TypedDict, total=False):
    kind: str                     # "bundle" or "model" (one file benched alone)
    path: str
    manifest_schema_version: int
    labels: list[str] | None
    created_utc: str | None
    edgekd_version: str | None
    eval: Eval


class Settings(TypedDict):
    threads: list[int]
    batch: list[int]
    warmup: int
    warmup_seconds: float
    runs: int
    min_seconds: float
    max_runs: int
    runtime: str | None
    providers: list[str] | None
    data: str | None
    repeat: int
    isolation: str


class Device(TypedDict, total=False):
    board: str | None
    cpu: str | None
    cores: int
    machine: str
    memory_bytes: int | None
    os: str
    kernel: str
    python: str
    cpu_governor: str | None
    packages: dict                # package name → version
    thermal_before: dict
    thermal_after: dict


class Backend(TypedDict, total=False):
    backend: str
    module: str
    version: str
    delegate: str | None
    providers: list[str] | None
    delegated_nodes: int | None


class Warmup(TypedDict):
    runs: int
    seconds: float


class Latency(TypedDict):
    runs: int
    seconds: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    std: float
    percentiles: list[float]


class Memory(TypedDict):        # bytes
    rss_before_load: int
    rss_after_load: int
    rss_peak_inference: int
    rss_after_runs: int
    rss_peak: int
    source: str
    model_bytes: int


class Repeats(TypedDict):
    count: int
    p50: list[float]              # one entry per repetition
    p90: list[float]
    spread_ms: float


class Skipped(TypedDict):       # a setting the runtime could not run (a fixed-batch model at batch 8)
    threads: int
    batch: int
    skipped: str                  # why


class Measurement(TypedDict):
    threads: int
    batch: int
    delegate: str | None
    init_ms: float
    first_inference_ms: float
    warmup: Warmup
    latency_ms: Latency
    throughput_per_s: float
    memory: Memory
    repeats: Repeats


class Model(TypedDict, total=False):
    file: str
    role: str                     # one of edgekd.core.schema.BENCH_ROLES
    format: str | None
    precision: str | None
    runtime: str
    bytes: int
    sha256: str
    parameters: int | None
    macs: int | None
    reference_accuracy: float | None
    backend: Backend | None
    input: dict
    output: dict
    accuracy: float | None
    eval_samples: int | None
    eval_seconds: float
    agreement_with_teacher: float | None
    measurements: list[Measurement | Skipped]


class Comparison(TypedDict):
    model: str
    teacher: str
    threads: int
    batch: int
    size_ratio: float | None
    speedup: float | None
    memory_ratio: float | None
    model_memory_ratio: float | None
    accuracy_delta: float | None
    agreement_with_teacher: float | None


class Outputs(TypedDict):
    json: str | None
    markdown: str | None
    plot: str | None


class Against(TypedDict):
    path: str                     # the old bundle (or model file) of ``bench --against``
    pairs: int                    # repetitions of each side, measured back to back
    order: str
    bench: dict                   # its own bench.json document, measured in this same run


class RemoteRun(TypedDict):
    host: str                     # [user@]host of ``bench --remote``
    path: str                     # where the copied bundle stays on the board
    copy: str                     # "rsync" or "scp"
    kept: str | None              # the run's folder on the board, with --remote-keep


class BenchDoc(TypedDict, total=False):
    schema: str
    schema_version: int
    edgekd_version: str
    created_utc: str
    target: Target
    settings: Settings
    device: Device
    teacher: str | None
    models: list[Model]
    comparisons: list[Comparison]
    outputs: Outputs
    against: Against              # only with --against
    remote: RemoteRun             # only with --remote: the board's device facts are above



HINT = "pass a bench.json written by edgekd bench (--out or --save-baseline)"


def read(path, what: str = "bench.json") -> BenchDoc:
    """The bench.json at ``path``, strict JSON and checked (:func:`from_json`)."""
    return from_json(read_json(Path(path), what, ConfigError), f"'{path}'", what)


def from_json(data: bytes | dict, where: str = "the bench.json", what: str = "bench.json") -> BenchDoc:
    """A bench.json document: text (strict JSON) or an already parsed object, checked: its schema
    and version, then every field a reader relies on. Any problem is one ConfigError."""
    doc = parse_json(data, where, what, ConfigError) if isinstance(data, bytes) else data
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{where} is not an edgekd bench.json", hint=HINT)
    check_version(doc, where, "bench.json", ConfigError)
    try:
        _check_fields(doc)
    except Invalid as exc:
        raise ConfigError(f"{where} is not a usable {what}: {exc}", hint=HINT) from None
    return doc


def check_for_proposal(doc: BenchDoc, where: str) -> BenchDoc:
    """The fields init-budget's proposal reads beyond a baseline's (the settings, the device line,
    each model's role and format): a hand-made or truncated bench.json is one ConfigError."""
    try:
        settings = field(doc, "settings", "the document", OBJECT)
        for key in ("threads", "batch"):
            field(settings, key, "settings", LIST)
        field(doc, "created_utc", "the document", TEXT)
        device = field(doc, "device", "the document", OBJECT)
        field(device, "packages", "device", OBJECT)
        field(device, "cores", "device", COUNT)
        for key in ("os", "python"):
            field(device, key, "device", TEXT)
        for i, m in enumerate(doc["models"]):
            field(m, "role", f"models[{i}]", TEXT)
            field(m, "format", f"models[{i}]", TEXT)
    except Invalid as exc:
        raise ConfigError(f"{where} cannot seed a budget: {exc}", hint=HINT) from None
    return doc


def to_json(doc: BenchDoc) -> str:
    """Strict JSON: a number that is not finite (a ratio of nothing) becomes null, since bare
    NaN/Infinity are not JSON and other tools refuse them."""
    return json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# -- the fields readers rely on -----------------------------------------------------------------

def _check_fields(doc: dict) -> None:
    for key in ("device", "target"):
        if key in doc:
            field(doc, key, "the document", OBJECT)
    if (doc.get("target") or {}).get("eval") is not None:
        field(doc["target"], "eval", "target", OBJECT)
    first_of: dict[str, int] = {}       # a file twice: a budget or a baseline would match two models
    for i, m in enumerate(field(doc, "models", "the document", OBJECTS)):
        at = f"models[{i}]"
        name = field(m, "file", at, TEXT)
        if first_of.setdefault(name, i) != i:
            raise Invalid(f"{at} repeats the file '{name}' of models[{first_of[name]}]; a bench measures each file once")
        field(m, "bytes", at, COUNT)
        field(m, "accuracy", at, FRACTION)
        for j, x in enumerate(field(m, "measurements", at, OBJECTS)):
            _check_measurement(x, f"{at}.measurements[{j}]")


def _check_measurement(x: dict, at: str) -> None:
    if "skipped" in x:
        return
    for key in ("threads", "batch"):
        field(x, key, at, COUNT)
    field(field(x, "latency_ms", at, OBJECT), "p50", f"{at}.latency_ms", POSITIVE)
    field(field(x, "memory", at, OBJECT), "rss_peak_inference", f"{at}.memory", POSITIVE)
    if x.get("repeats"):            # the median of the repetitions is the p50 a baseline compares with
        field(field(x, "repeats", at, OBJECT), "p50", f"{at}.repeats", POSITIVES)
