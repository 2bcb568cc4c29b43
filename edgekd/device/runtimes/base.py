"""The Runtime interface and the int8 quantize / dequantize helpers. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekd.core.errors import DataError, RuntimeBackendError


class UnsupportedBatch(RuntimeBackendError):
    """The model cannot run at the requested batch size (e.g. a fixed batch of 1)."""


@dataclass
class TensorInfo:
    name: str
    shape: list            # ints; None for a dynamic dimension
    dtype: str             # numpy dtype name: float32, int8, uint8 …
    scale: float | None = None       # quantization of an integer tensor
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0 and np.dtype(self.dtype).kind in "iu"

    def spec(self) -> dict:
        """name, dtype and the quantization (scale and zero point; None for a float tensor)."""
        return {"name": self.name, "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "shape": self.shape, "dtype": self.dtype}
        if self.quantized:
            d.update(scale=self.scale, zero_point=self.zero_point)
        return d


def load_error(backend: str, path: Path, exc: Exception, hint: str) -> RuntimeBackendError:
    """A runtime's refusal to load a file, as one line: its first line of complaint."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return RuntimeBackendError(f"{backend} cannot load '{path.name}': {first}", hint=hint)


def require_single_input(path: Path, inputs: int, outputs: int) -> None:
    if inputs != 1 or not outputs:
        raise RuntimeBackendError(f"'{path.name}' has {inputs} inputs and {outputs} outputs; "
                                  "edgekd benches single-input classifiers")


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """float → the model's integer input: round(x / scale) + zero_point, clipped (TFLite's affine scheme)."""
    dtype = np.dtype(info.dtype)
    lim = np.iinfo(dtype)
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(info.scale)) + info.zero_point
    return np.ascontiguousarray(np.clip(q, lim.min, lim.max).astype(dtype))


def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    """The model's integer output → float: (q - zero_point) · scale."""
    return ((np.asarray(q).astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale))


@dataclass
class Runtime:
    """One loaded model. Subclasses fill the fields and implement ``set_batch`` and ``bind``."""

    path: Path
    backend: str = ""                 # "onnxruntime" | "tflite"
    module: str = ""                  # the Python package that runs it (onnxruntime, ai_edge_litert …)
    version: str = ""
    threads: int | None = None
    delegate: str | None = None       # "XNNPACK" or None (TFLite); execution providers for ONNX
    providers: list[str] = field(default_factory=list)
    input: TensorInfo = field(kw_only=True)      # every runtime knows both once its model is loaded
    output: TensorInfo = field(kw_only=True)
    batch: int | None = None          # the batch size the runtime is currently set up for
    details: dict[str, Any] = field(default_factory=dict)

    # -- shape ---------------------------------------------------------------------------
    @property
    def input_shape(self) -> list:
        return self.input.shape

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input.dtype)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when the batch dimension is dynamic."""
        b = self.input.shape[0] if self.input.shape else None
        return b if isinstance(b, int) and b > 0 else None

    def check_sample_shape(self, sample_shape: tuple, what: str = "the data") -> None:
        """A DataError unless samples of ``sample_shape`` fit the model input (batch dimension aside)."""
        check_sample_shape(sample_shape, self.input.shape, self.path.name, what)

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        """float32 random input of the model's shape (for latency without data)."""
        dims = self.input.shape[1:]
        if any(d is None for d in dims):
            raise DataError(f"'{self.path.name}' has dynamic input dimensions {self.input.shape}",
                            hint="pass --data eval.npz so the input shape is known")
        return np.random.default_rng(seed).standard_normal((batch, *dims)).astype(np.float32)

    # -- running -------------------------------------------------------------------------
    def set_batch(self, batch: int) -> None:
        raise NotImplementedError

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """float32 batch → the array the model takes (quantized for an int8 input); sets the batch. A batch
        already of the model's integer input type is taken as is: the uint8 pixels of a file exported with
        ``--input uint8`` (its manifest input's ``values``: ``pixels``, :func:`edgekd.core.preprocess.to_pixels`)."""
        x = np.asarray(x)
        if x.shape[0] != self.batch:
            self.set_batch(int(x.shape[0]))
        if x.dtype == self.input_dtype and x.dtype.kind in "iu":
            return np.ascontiguousarray(x)
        if self.input.quantized:
            return quantize(x, self.input)
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def bind(self, prepared: np.ndarray) -> Callable[[], Any]:
        """A zero-argument callable that runs the model once on ``prepared``: the runtime's own
        call and nothing else (``session.run`` with a fixed feed; the interpreter's ``invoke``
        with the input tensor already set). This is what the timed loop times."""
        raise NotImplementedError

    def fetch(self, result: Any) -> np.ndarray:
        """The raw output array after a bound call that returned ``result``."""
        raise NotImplementedError

    def profile(self, prepared: np.ndarray, runs: int = 100, warmup: int = 10) -> dict:
        """Where the time of a call on ``prepared`` goes, per op: a dict of the shape
        ``edgekd.core.schema.bench.Profile`` declares. onnxruntime: its profiler's per-node times over
        ``runs`` runs after ``warmup`` ones, in a session of its own, raw and less the profiler's own
        cost per node; TFLite: the ops its delegate did not take and each op's time alone (one-op
        models), where ai-edge-litert's tools can read the file. Run it after any timing: it costs time
        and memory of its own."""
        raise NotImplementedError

    def run_raw(self, prepared: np.ndarray) -> np.ndarray:
        return self.fetch(self.bind(prepared)())

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output → float32 logits (dequantized for an int8 output)."""
        if self.output.quantized:
            return dequantize(raw, self.output)
        return np.asarray(raw, dtype=np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 batch in, float32 logits out."""
        return self.postprocess(self.run_raw(self.prepare(x)))

    def logits(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """float32 logits of every sample, (samples, classes), in batches the model accepts: a
        fixed-batch model runs at its own batch, its short last chunk padded with copies of the
        last sample and the padding's rows dropped; int8 I/O is (de)quantized by ``run``."""
        step = self.fixed_batch or batch
        out = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step and self.fixed_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            out.append(self.run(chunk).reshape(len(chunk), -1)[:n])
        if not out:
            return np.zeros((0, int(self.output.shape[-1] or 0)), np.float32)
        return np.concatenate(out)

    def predict(self, x: np.ndarray, batch: int = 64) -> np.ndarray:
        """Top-1 class of every sample (the argmax of :meth:`logits`)."""
        if not len(x):
            return np.zeros(0, dtype=np.int64)
        return np.argmax(self.logits(x, batch), axis=1)

    def io_specs(self) -> tuple[dict, dict]:
        """The input and output as export.json and the manifest record them."""
        return self.input.spec(), self.output.spec()

    def info(self) -> dict:
        return {"backend": self.backend, "module": self.module, "version": self.version,
                "threads": self.threads, "delegate": self.delegate, "providers": self.providers,
                "input": self.input.as_dict(), "output": self.output.as_dict(), **self.details}


def check_sample_shape(sample_shape: tuple, input_shape, model: str, what: str) -> None:
    """A DataError unless samples of ``sample_shape`` fit ``input_shape`` (batch first, aside);
    a dimension that is not a number (None, a symbolic name) takes any size."""
    want = list(input_shape)[1:]
    if len(sample_shape) == len(want) and all(not isinstance(w, int) or w == s for w, s in zip(want, sample_shape)):
        return
    shown = ", ".join(["batch"] + [str(d) if isinstance(d, int) else "?" for d in want])
    raise DataError(f"{what} has samples of shape {tuple(sample_shape)}, but '{model}' expects input ({shown})",
                    hint="pass the eval.npz that was exported with this model")
