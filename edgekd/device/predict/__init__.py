"""The model in the user's program: a verified bundle's file, fed by the bundle's own preprocessing.
Torch-free (numpy, the runtime, Pillow for image files)::

    from edgekd import Predictor
    p = Predictor("runs/demo/bundle")                  # the student's int8 TFLite file
    [best] = p.predict("cat.jpg")                      # a path, a Pillow image, a uint8 H×W×C frame …
    best.label, best.probability, best.labels[:3]
    x = p.preprocess(frames)                           # the model's input before the runtime's quantization

The bundle is verified as bench verifies it (every file's sha256, no symlinks, no ONNX external
data) before its model is opened, and opened through :mod:`edgekd.device.runtimes`, the one place
that opens a model file. Probabilities are the softmax of the (dequantized) logits.
"""
from __future__ import annotations

import heapq
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.bundle import Bundle, read_manifest, verify
from edgekd.core.errors import BundleError, ConfigError, closest, unknown_name
from edgekd.core.schema.manifest import takes_pixels
from edgekd.device.predict.inputs import InputContract
from edgekd.device.runtimes import open_model, runtime_for, runtime_row
from edgekd.device.runtimes.base import quantize

#: the default file of a role, best first: full-integer int8 (camera-ready first), then fp32, then the rest;
#: TFLite before ONNX at each, the runtime of small boards (a key on the manifest's fields, not a name list)
PRECISION_ORDER = ("int8", "fp32", "fp16")


@dataclass(frozen=True)
class Prediction:
    """One input's ``top_k`` classes, most probable first."""
    classes: list[int]
    labels: list[str]
    probabilities: list[float]
    source: str | None = None        # the file it came from (the CLI's inputs), else None

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "probability": self.probability,
                "top": [{"class": c, "label": n, "probability": p}
                        for c, n, p in zip(self.classes, self.labels, self.probabilities)]}


class Predictor:
    """One model file of a bundle: ``model`` (its role: student or teacher), ``format`` (None: the
    default of :data:`PRECISION_ORDER`), ``threads`` (None: the runtime's own default)."""

    def __init__(self, bundle: str | os.PathLike, model: str = "student", format: str | None = None,
                 threads: int | None = None):
        _check_arguments(model, format, threads)
        self.bundle: Bundle = read_manifest(Path(bundle))
        verify(self.bundle)
        self.entry, self.chosen = choose(self.bundle, model, format)
        path = self.bundle.root / self.entry["file"]
        runtime = runtime_for(path, self.entry.get("runtime"))
        runtime_row(runtime).check_file(path, self.entry["file"])
        self.runtime = open_model(path, threads=threads, runtime=runtime)
        self.contract = InputContract.of(self.bundle.manifest, self.entry, self.runtime.input_shape)
        self.labels = _labels(self.bundle.manifest.get("labels"), self.runtime.output.shape, self.entry["file"])
        self._table = _input_table(self.contract, self.runtime)
        self._channel = np.arange(self.contract.sample[0])[None, :, None, None]     # each pixel's row of the table

    def __repr__(self) -> str:
        e = self.entry
        return (f"Predictor('{self.bundle.root}', model='{e['role']}', file='{e['file']}' ({e['format']}, "
                f"{self.chosen}), threads={self.runtime.threads})")

    def preprocess(self, images: Any) -> np.ndarray:
        """Pictures (paths, Pillow images, uint8 H×W×C arrays, or lists of them) → the model's input
        before the runtime's own int8 quantization (see :meth:`.inputs.InputContract.preprocess`)."""
        return self.contract.preprocess(images)

    def logits(self, images: Any) -> np.ndarray:
        """float32 logits (dequantized), one row per input."""
        frame = self._one_frame(images)
        if frame is not None:       # the runtime's own call and little else (the budget: 10 % of it)
            return self.runtime.postprocess(self.runtime.fetch(self.runtime.bind(frame)()))
        return self.runtime.logits(self._model_input(images))

    def _one_frame(self, images: Any) -> np.ndarray | None:
        """The runtime's input for one uint8 picture already at the model's size and channels (a camera
        frame: H×W, or H×W×C), without the general path's checks and copies: the same numbers (the
        table's lookup, or the pixels themselves for a camera-ready file). None for anything else."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or self.contract.channels is None:
            return None
        if self.runtime.fixed_batch not in (None, 1):        # the general path pads to the file's batch
            return None
        c, h, w = self.contract.sample
        if images.shape != (h, w, c) and not (c == 1 and images.shape == (h, w)):
            return None
        if self.contract.pixels:
            return np.ascontiguousarray(images).reshape(1, h, w, c)
        if self._table is None:
            return None
        if c == 1:
            return self._table[0][images].reshape(1, 1, h, w)
        return np.ascontiguousarray(self._table[self._channel[0, :, 0, 0], images].transpose(2, 0, 1))[None]

    def predict(self, images: Any, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` classes of each input: one image or a batch, a float array being samples
        already preprocessed (as ``eval.npz`` holds them, or ``preprocess`` returns them)."""
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise ConfigError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        k = min(int(top_k), len(self.labels))
        return [self.top(row, k) for row in self.logits(images)]

    def _model_input(self, images: Any) -> np.ndarray:
        """What the runtime is given: float arrays (preprocessed) as they are; the rest (raw: pictures,
        or an array model's integer samples) through the table of :func:`_input_table` where there is
        one (8-bit pictures), else through ``preprocess``. A list is taken item by item when it holds
        float arrays, so a preprocessed sample is never standardised twice."""
        if isinstance(images, np.ndarray) and images.dtype.kind == "f":
            return self.contract.model_input(images)
        if isinstance(images, (list, tuple)) and any(_preprocessed(item) for item in images):
            return np.concatenate([self.contract.model_input(item) if _preprocessed(item)
                                   else self.contract.preprocess([item]) for item in images])
        if self._table is None:
            return self.contract.preprocess(images)
        return self._table[self._channel, self.contract.pictures(images)]

    def top(self, logits: np.ndarray, k: int) -> Prediction:
        """The ``k`` most probable classes of one row of logits (softmax in float64; ties in class order).
        In Python's floats, not numpy's: a numpy call between two of the runtime's calls cost about twice
        its own time (6 µs of numpy added 11–16 µs to a loop of LiteRT calls on this machine), and a
        classifier's row is short."""
        values = logits.tolist()
        high = max(values)
        e = [math.exp(v - high) for v in values]
        total = math.fsum(e)
        classes = heapq.nlargest(k, range(len(e)), key=e.__getitem__)
        return Prediction(classes, [self.labels[c] for c in classes], [e[c] / total for c in classes])


def _preprocessed(item: Any) -> bool:
    return isinstance(item, np.ndarray) and item.dtype.kind == "f"


def _check_arguments(model: Any, fmt: Any, threads: Any) -> None:
    """The Python API's own arguments, checked as the CLI's are (a runtime would misreport them)."""
    if not isinstance(model, str) or not (fmt is None or isinstance(fmt, str)):
        raise ConfigError(f"model and format are names (e.g. 'student', 'tflite-int8'), got {model!r} and {fmt!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise ConfigError(f"threads must be a whole number of at least 1 (or None: the runtime's own), got {threads!r}")


def _input_table(contract: InputContract, runtime) -> np.ndarray | None:
    """The model's input for each 8-bit pixel value per channel (C×256): the standardised value,
    quantized by the runtime's own :func:`quantize` for an int8 input. A camera frame then takes one
    lookup per pixel to the runtime's input (the same numbers as preprocess + the runtime's
    quantization, which cost a float64 pass each; the issue's budget for predict is 10 % of the call).
    None where the input is not 8-bit pictures, or is the pixels themselves."""
    levels = None if contract.pixels else contract.levels()
    if levels is None:
        return None
    return quantize(levels, runtime.input) if runtime.input.quantized else levels.astype(runtime.input_dtype)


def choose(bundle: Bundle, role: str, fmt: str | None) -> tuple[dict, str]:
    """(the manifest entry, why it was chosen) of ``role``'s file in ``fmt``, or the default one."""
    entries = [m for m in bundle.models if m["role"] == role]
    if not entries:
        raise unknown_name("model", role, {m["role"] for m in bundle.models}, ConfigError)
    if fmt is not None:
        chosen = next((m for m in entries if m["format"] == fmt), None)
        if chosen is None:
            have = sorted(m["format"] for m in entries)
            guess = closest(fmt, have)
            raise ConfigError(f"the bundle '{bundle.root}' has no {role} file in format '{fmt}'",
                              hint=(f"did you mean '{guess}'? " if guess else "") + f"its {role} files: {', '.join(have)}")
        return chosen, "asked for"
    best = min(entries, key=_preference)
    return best, "the default: int8 first, then fp32, then fp16; TFLite first"


def _preference(m: dict) -> tuple:
    precision = m.get("precision")
    rank = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
    camera_ready = takes_pixels(m)
    return rank, m.get("full_integer") is False, not camera_ready, m.get("runtime") != "tflite"


def _labels(labels: Any, output_shape: list, file: str) -> list[str]:
    """The manifest's class names, one per output of the model (numbered where it records none)."""
    classes = output_shape[-1] if output_shape else None
    if not isinstance(classes, int) or classes < 1:
        raise BundleError(f"'{file}' has an output of shape {output_shape}; a classifier's is (batch, classes)")
    if labels is None:
        return [str(i) for i in range(classes)]
    if not (isinstance(labels, list) and len(labels) == classes and all(isinstance(n, str) for n in labels)):
        raise BundleError(f"the manifest's labels do not name the {classes} classes of '{file}'",
                          hint="export the bundle again")
    return labels


__all__ = ["Predictor", "Prediction", "choose"]
