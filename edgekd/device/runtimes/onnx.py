"""onnxruntime: threads through SessionOptions, CPU plus CUDA/TensorRT where present. Torch-free."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edgekd.core.errors import RuntimeBackendError, unknown_name
from edgekd.device.runtimes.base import Runtime, TensorInfo, UnsupportedBatch, load_error, require_single_input
from edgekd.device.runtimes.onnx_profile import profile_onnx

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
              "tensor(int64)": "int64"}

#: short names users may write → execution provider; preferred order first.
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}


def import_ort():
    """The onnxruntime package, or a RuntimeBackendError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeBackendError("onnxruntime is not installed",
                                  hint="pip install onnxruntime (onnxruntime-gpu on a Jetson), or bench "
                                       "a bundle's TFLite models alone with --runtime tflite") from None
    return onnxruntime


def resolve_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """Execution providers to use: the requested ones (short or full names), else GPU ones
    where present, then CPU."""
    if not requested:
        return [p for p in PROVIDERS.values() if p in available] or ["CPUExecutionProvider"]
    out = []
    for name in requested:
        full = PROVIDERS.get(name.lower(), name)
        if full not in available:
            known = sorted({*available, *[k for k, v in PROVIDERS.items() if v in available]})
            raise unknown_name("onnxruntime execution provider (not available here)", name, known,
                               RuntimeBackendError)
        out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def _dims(shape) -> list:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


class OnnxRuntime(Runtime):
    def __init__(self, path: Path, threads: int | None = None, providers: list[str] | None = None):
        ort = import_ort()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        chosen = resolve_providers(providers, ort.get_available_providers())
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
        except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph … all plain Exceptions
            raise load_error("onnxruntime", path, exc, "the file is not a valid ONNX model; export it again") from None
        ins, outs = sess.get_inputs(), sess.get_outputs()
        require_single_input(path, len(ins), len(outs))
        i, o = ins[0], outs[0]
        super().__init__(
            path=Path(path), backend="onnxruntime", module="onnxruntime", version=ort.__version__,
            threads=threads, delegate=None, providers=sess.get_providers(),
            input=TensorInfo(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type)),
            output=TensorInfo(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type)),
            details={"intra_op_num_threads": opts.intra_op_num_threads})
        self.session = sess
        self._out_names = [o.name]
        fixed = self.fixed_batch
        self.batch = fixed or 1

    def set_batch(self, batch: int) -> None:
        fixed = self.fixed_batch
        if fixed and batch != fixed:
            raise UnsupportedBatch(f"'{self.path.name}' has a fixed batch size of {fixed}; "
                                   f"batch {batch} is not supported")
        self.batch = batch

    def bind(self, prepared: np.ndarray):
        # a C-level partial: InferenceSession.run(output_names, feed) with nothing around it
        return functools.partial(self.session.run, self._out_names, {self.input.name: prepared})

    def fetch(self, result) -> np.ndarray:
        return result[0]

    def profile(self, prepared: np.ndarray, runs: int = 100, warmup: int = 10) -> dict:
        """Per-node times from onnxruntime's profiler, in a session of its own (this one stays unprofiled)."""
        return profile_onnx(self, import_ort(), prepared, runs, warmup)
