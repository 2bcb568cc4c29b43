"""TFLite through ai_edge_litert, else tflite_runtime, else tensorflow.lite. Torch-free.

Reports whether the default XNNPACK delegate was applied (a DELEGATE node in the
execution plan after allocate_tensors); dynamic batch through resize_tensor_input.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgekd.core.errors import RuntimeBackendError
from edgekd.device.runtimes.base import Runtime, TensorInfo, UnsupportedBatch, load_error, require_single_input
from edgekd.device.runtimes.tflite_ops import op_times
from edgekd.device.runtimes.tflite_profile import delegation, with_op_times

#: (module that holds Interpreter, distribution whose version we report)
BACKENDS = [("ai_edge_litert.interpreter", "ai-edge-litert"),
            ("tflite_runtime.interpreter", "tflite-runtime"),
            ("tensorflow.lite", "tensorflow")]


def import_interpreter():
    """(Interpreter class, module name, version) of the first TFLite backend that imports."""
    errors = []
    for modname, dist in BACKENDS:
        try:
            mod = importlib.import_module(modname)
        except Exception as exc:  # ImportError, or tflite_runtime's numpy-2 "_ARRAY_API" failure
            errors.append(f"{modname}: {type(exc).__name__}")
            continue
        return mod.Interpreter, modname.split(".")[0], _version(dist)
    raise RuntimeBackendError("no TFLite runtime is installed (" + "; ".join(errors) + ")",
                              hint="pip install ai-edge-litert (tflite-runtime where it has no wheel), or "
                                   "bench a bundle's ONNX models alone with --runtime onnxruntime")


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _info(d: dict) -> TensorInfo:
    sig = d.get("shape_signature")
    shape = list(sig if sig is not None and len(sig) else d["shape"])
    scale, zp = d.get("quantization", (0.0, 0))
    params = d.get("quantization_parameters") or {}
    if len(params.get("scales", [])) > 1:
        raise RuntimeBackendError(f"tensor '{d['name']}' is quantized per channel; edgekd supports "
                                  "per-tensor input/output quantization")
    dtype = np.dtype(d["dtype"]).name
    q = float(scale) if scale else None
    return TensorInfo(d["name"], [int(s) if s > 0 else None for s in shape], dtype,
                      q, int(zp) if q else None)


class TFLiteRuntime(Runtime):
    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        # ``providers`` are onnxruntime's execution providers: TFLite has none (the only delegate
        # it applies here is its default, XNNPACK), so they are accepted and do not apply
        Interpreter, module, version = import_interpreter()
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise RuntimeBackendError(f"'{Path(path).name}' is not a TFLite flatbuffer (no TFL3 identifier)",
                                      hint="the file is corrupt or not a .tflite model; export it again")
        try:
            interp = Interpreter(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise load_error("TFLite", Path(path), exc, "the file is corrupt or truncated; export it again") from None
        ins, outs = interp.get_input_details(), interp.get_output_details()
        require_single_input(Path(path), len(ins), len(outs))
        super().__init__(path=Path(path), backend="tflite", module=module, version=version,
                         threads=threads, input=_info(ins[0]), output=_info(outs[0]))
        self.interpreter = interp
        self._in, self._out = ins[0]["index"], outs[0]["index"]
        self._loaded_shapes = [int(s) for s in ins[0]["shape"]], [int(s) for s in outs[0]["shape"]]
        self.batch = int(ins[0]["shape"][0])
        self._input_shape = tuple(int(d) for d in ins[0]["shape"])    # bind's check, without a details call
        self._update_delegate()

    def _update_delegate(self) -> None:
        try:
            ops = self.interpreter._get_ops_details()  # private but stable across tf.lite / litert
        except Exception:
            self.delegate, self.details["delegated_nodes"] = None, None
            return
        n = sum(1 for op in ops if op.get("op_name") == "DELEGATE")
        # Only TFLite's default delegate can be applied here (we load no others): XNNPACK.
        self.delegate = "XNNPACK" if n else None
        self.details["delegated_nodes"] = n
        self.details["ops"] = sum(1 for op in ops if op.get("op_name") != "DELEGATE")

    def profile(self, prepared: np.ndarray, runs: int = 100, warmup: int = 10) -> dict:
        """The ops the delegate did not take and, at the file's own batch where ai-edge-litert's
        flatbuffer tools are installed, each op's p50 alone over ``runs`` calls after ``warmup``, on
        zeros (LiteRT's Python API times no op in the whole graph); ``prepared`` only sets the batch."""
        if tuple(prepared.shape) != tuple(self.interpreter.get_input_details()[0]["shape"]):
            self.set_batch(int(prepared.shape[0]))
        try:
            ops = self.interpreter._get_ops_details()
        except Exception as exc:  # an older TFLite without the (private) call
            raise RuntimeBackendError(f"{self.module} {self.version} does not list its ops; no profile",
                                      hint="pip install -U ai-edge-litert") from exc
        names = {int(t["index"]): t["name"] for t in self.interpreter.get_tensor_details()}
        profile = delegation(ops, names, self.delegate)
        timed = op_times(self.path, type(self.interpreter), self.threads, runs, warmup) \
            if self.batch == self._loaded_shapes[0][0] else None     # a cut-out op keeps the file's shapes
        return with_op_times(profile, *timed, runs) if timed else profile

    def set_batch(self, batch: int) -> None:
        if batch == self.batch:
            return
        shape = [batch, *[int(d) if d else 1 for d in self.interpreter.get_input_details()[0]["shape"][1:]]]
        try:
            self.interpreter.resize_tensor_input(self._in, shape, strict=False)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            # put the interpreter back at its old batch so it stays usable
            old = [self.batch, *shape[1:]]
            self.interpreter.resize_tensor_input(self._in, old, strict=False)
            self.interpreter.allocate_tensors()
            raise UnsupportedBatch(f"'{self.path.name}' has a fixed batch of {self.batch} and cannot be "
                                   f"resized to {batch}", hint=str(exc).strip().splitlines()[0]) from None
        self.batch = batch
        self._input_shape = tuple(int(d) for d in self.interpreter.get_input_details()[0]["shape"])
        self._update_delegate()

    def bind(self, prepared: np.ndarray):
        # the input tensor is filled once (it is preallocated and does not change); the call is invoke().
        # The shape is compared with the one kept at each resize: get_input_details builds a dict of every
        # detail, 20 µs a call, which a predictor pays for each image
        if prepared.shape != self._input_shape:
            self.set_batch(int(prepared.shape[0]))
        self.interpreter.set_tensor(self._in, prepared)
        return self.interpreter.invoke

    def fetch(self, result) -> np.ndarray:
        return self.interpreter.get_tensor(self._out)

    def io_specs(self) -> tuple[dict, dict]:
        """As every runtime's, plus the tensors' shapes as loaded (a TFLite file fixes them)."""
        ins, outs = super().io_specs()
        return {**ins, "shape": self._loaded_shapes[0]}, {**outs, "shape": self._loaded_shapes[1]}
