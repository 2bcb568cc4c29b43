"""bench.json: the document ``edgekd bench`` writes and the report, ``init-budget`` and the CI gate
read. Torch-free.

The TypedDicts below are the document's shape, declared once (docs/reference/schemas.md's bench.json section is
tested against them); :func:`from_json`, the one reader's check, is derived from them, and
:func:`to_json` is the one writer's text. The keys a reader relies on (the gate's baseline checks)
are the required ones (the ``_…Relied`` bases); every other declared key is checked for its type
when present, so a bad file fails before anything is measured.
"""
from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from edgekd.core.errors import ConfigError
from edgekd.core.schema.bench_classes import Confusion, LostClasses, PerClass, check_classes
from edgekd.core.schema.fields import (FRACTION, POSITIVE, POSITIVES, Count, Invalid,
                                       Positive, check_shape)
from edgekd.core.schema.jsonfile import check_version, json_text, parse_json, read_json

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
    eval: Eval | None


class Settings(TypedDict, total=False):
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
    packages: dict[str, Any]                # package name → version
    thermal_before: dict[str, Any]
    thermal_after: dict[str, Any]


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


class _LatencyRelied(TypedDict):
    p50: Positive                 # what a baseline compares


class Latency(_LatencyRelied, total=False):
    runs: int
    seconds: float
    min: float
    p90: float
    p99: float
    max: float
    mean: float
    std: float
    percentiles: list[float]


class _MemoryRelied(TypedDict):  # bytes
    rss_peak_inference: Annotated[int, POSITIVE]


class Memory(_MemoryRelied, total=False):
    rss_before_load: int
    rss_after_load: int
    rss_after_runs: int
    rss_peak: int
    source: str
    model_bytes: int


class _RepeatsRelied(TypedDict):
    p50: Annotated[list[float], POSITIVES]    # one entry per repetition; their median is what a baseline compares


class Repeats(_RepeatsRelied, total=False):
    count: int
    p90: list[float]
    spread_ms: float


class Skipped(TypedDict):       # a setting the runtime could not run (a fixed-batch model at batch 8)
    threads: int
    batch: int
    skipped: str                  # why


class _MeasurementRelied(TypedDict):
    threads: Count
    batch: Count
    latency_ms: Latency
    memory: Memory


class Measurement(_MeasurementRelied, total=False):
    delegate: str | None
    init_ms: float
    first_inference_ms: float
    warmup: Warmup
    throughput_per_s: float
    repeats: Repeats | None


class ProfileOp(TypedDict):
    """One op type of a profile: its nodes, summed."""
    op: str
    count: Count
    ms: float | None              # onnxruntime: the profiler's time; TFLite: each op's time alone; summed (null: untimed)
    corrected_ms: float | None    # … less the profiler's own cost per node (TFLite: one interpreter call)
    share: Annotated[float | None, FRACTION]     # of the corrected total
    undelegated: int | None       # TFLite: how many the delegate did not take; onnxruntime: null


class ProfileNode(TypedDict):
    index: int                    # the node's index in the runtime's graph
    node: str                     # onnxruntime: the node's name; TFLite: its output tensor's (module path)
    op: str
    ms: float | None
    corrected_ms: float | None
    share: Annotated[float | None, FRACTION]
    delegated: bool | None        # TFLite: whether XNNPACK took it; onnxruntime: null


class Profile(TypedDict):
    """``bench --profile``: where one call's time goes, at the first setting, profiled after its timing
    (:meth:`edgekd.device.runtimes.Runtime.profile`, where each key is explained)."""
    method: Literal["onnxruntime-profiler", "one-op-models", "delegation"]
    threads: Count
    batch: Count
    p50_ms: Positive              # the same child's unprofiled p50, to set beside the totals
    runs: int | None              # profiled runs (warm-up left out; --runs, at most 200); null: nothing was run
    total_ms: float | None        # the nodes' raw times, summed
    node_overhead_ms: float | None   # what the profiler reads for a node that does nothing (TFLite: a call)
    corrected_total_ms: float | None
    delegate: str | None
    partitions: int | None        # TFLite: the delegate's partitions (DELEGATE nodes)
    ops: list[ProfileOp]          # timed (onnxruntime, one-op-models): the costliest first;
    #                               delegation (TFLite without the flatbuffer tools): the most undelegated first
    nodes: list[ProfileNode]      # timed: every node, the costliest first; delegation: the undelegated ones


class _ModelRelied(TypedDict):
    file: str
    bytes: Count
    accuracy: Annotated[float | None, FRACTION]
    measurements: list[Skipped | Measurement]


class Model(_ModelRelied, total=False):
    role: str                     # one of edgekd.core.schema.BENCH_ROLES
    format: str | None
    precision: str | None
    runtime: str
    sha256: str
    parameters: int | None
    macs: int | None
    reference_accuracy: float | None
    backend: Backend | None
    input: dict[str, Any]
    output: dict[str, Any]
    eval_samples: int | None
    eval_seconds: float
    agreement_with_teacher: float | None
    profile: Profile              # only with --profile
    # with eval data (edgekd.core.schema.bench_classes): per class in label order, rows of the
    # confusion matrix = true class, columns = predicted (null beyond 1000 classes), top-5 only with
    # more than 5 classes
    top5_accuracy: Annotated[float, FRACTION]
    per_class: PerClass
    confusion: Confusion | None


class Comparison(TypedDict, total=False):
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
    lost_classes: LostClasses      # with eval data: the classes the model lost against this teacher, largest drop first


class Excluded(TypedDict):
    file: str
    why: str                      # the gate's failed lines; "90.00%, 2.78 points below the best (92.78%)"


class Recommendation(TypedDict):  # one per role and measured setting (edgekd.device.bench.pick)
    role: str
    threads: int
    batch: int
    rule: str                     # "budget", "within_1_point" or "accuracy_not_measured"
    file: str | None              # None: no file of the role passes the budget
    p50_ms: float | None
    accuracy: float | None
    teacher: str | None           # the reference teacher file (fp32 ONNX first) the speed-up is over
    speedup_vs_teacher: float | None
    excluded: list[Excluded]      # the role's files the rule left out, and why


class _OutputsRelied(TypedDict):
    json: str | None
    markdown: str | None
    plot: str | None


class Outputs(_OutputsRelied, total=False):
    classes_plot: str | None      # with --plot and eval data: the confusion matrices, beside the plot


class Against(TypedDict):
    path: str                     # the old bundle (or model file) of ``bench --against``
    pairs: int                    # repetitions of each side, measured back to back
    order: str
    bench: dict[str, Any]                   # its own bench.json document, measured in this same run


class RemoteRun(TypedDict):
    host: str                     # [user@]host of ``bench --remote``
    path: str                     # where the copied bundle stays on the board
    copy: str                     # "rsync" or "scp"
    kept: str | None              # the run's folder on the board, with --remote-keep


class _BenchRelied(TypedDict):
    models: list[Model]


class BenchDoc(_BenchRelied, total=False):
    schema: str
    schema_version: int
    edgekd_version: str
    created_utc: str
    target: Target
    settings: Settings
    device: Device
    teacher: str | None
    comparisons: list[Comparison]
    recommendation: list[Recommendation]
    outputs: Outputs
    against: Against              # only with --against
    remote: RemoteRun             # only with --remote: the board's device facts are above



HINT = "pass a bench.json written by edgekd bench (--out or --save-baseline)"


def read(path: str | os.PathLike[str], what: str = "bench.json") -> BenchDoc:
    """The bench.json at ``path``, strict JSON and checked (:func:`from_json`)."""
    return from_json(read_json(Path(path), what, ConfigError), f"'{path}'", what)


def from_json(data: bytes | dict[str, Any], where: str = "the bench.json", what: str = "bench.json") -> BenchDoc:
    """A bench.json document: text (strict JSON) or an already parsed object, checked: its schema
    and version, then :class:`BenchDoc`'s fields. Any problem is one ConfigError."""
    doc = parse_json(data, where, what, ConfigError) if isinstance(data, bytes) else data
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{where} is not an edgekd bench.json", hint=HINT)
    check_version(doc, where, "bench.json", ConfigError)
    try:
        check_shape(doc, BenchDoc, "the document", "")
        _check_files_once(doc["models"])
        for i, m in enumerate(doc["models"]):
            check_classes(m, f"models[{i}]")
    except Invalid as exc:
        raise ConfigError(f"{where} is not a usable {what}: {exc}", hint=HINT) from None
    return typing.cast(BenchDoc, doc)


# what init-budget's proposal reads beyond a baseline's: the settings, the device line, each
# model's role and format (their types are BenchDoc's; here they are required)
class _ProposalSettings(TypedDict):
    threads: list[int]
    batch: list[int]


class _ProposalDevice(TypedDict):
    packages: dict[str, Any]
    cores: Count
    os: str
    python: str


class _ProposalModel(TypedDict):
    role: str
    format: str


class ProposalSource(TypedDict):
    settings: _ProposalSettings
    created_utc: str
    device: _ProposalDevice
    models: list[_ProposalModel]


def check_for_proposal(doc: BenchDoc, where: str) -> BenchDoc:
    """``doc`` holds what :class:`ProposalSource` declares: a hand-made or truncated bench.json is
    one ConfigError."""
    try:
        check_shape(doc, ProposalSource, "the document", "")
    except Invalid as exc:
        raise ConfigError(f"{where} cannot seed a budget: {exc}", hint=HINT) from None
    return doc


def to_json(doc: BenchDoc) -> str:
    """The file's text (strict JSON: a number that is not finite, a ratio of nothing, is null)."""
    return json_text(doc)


def _check_files_once(models: list[Model]) -> None:
    """A file twice: a budget or a baseline would match two models."""
    first_of: dict[str, int] = {}
    for i, m in enumerate(models):
        if first_of.setdefault(m["file"], i) != i:
            raise Invalid(f"models[{i}] repeats the file '{m['file']}' of models[{first_of[m['file']]}]; "
                          "a bench measures each file once")
