"""Parity: run each exported file in its real runtime on the eval set and compare with PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._util import quiet


def run_onnx(path: Path, x: np.ndarray, batch: int = 256) -> tuple[np.ndarray, dict, dict]:
    """Logits from onnxruntime (CPU), plus input/output specs for the manifest."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    step = 1 if inp.shape and isinstance(inp.shape[0], int) and inp.shape[0] == 1 else batch
    logits = np.concatenate([session.run(None, {inp.name: np.ascontiguousarray(x[i:i + step])})[0]
                             for i in range(0, len(x), step)])
    ins = {"name": inp.name, "dtype": "float32", "scale": None, "zero_point": None}
    outs = {"name": out.name, "dtype": "float32", "scale": None, "zero_point": None}
    return logits.astype(np.float32), ins, outs


def _qparams(detail: dict) -> tuple[float | None, int | None]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        return None, None
    return float(scale), int(zero_point)


def run_tflite(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """Logits from the LiteRT interpreter, one sample at a time (the file has batch 1);
    int8 input is quantized and int8 output dequantized with the model's own scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    in_scale, in_zp = _qparams(inp)
    out_scale, out_zp = _qparams(out)
    in_dtype, out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
    shape = tuple(int(s) for s in inp["shape"])
    logits = []
    for sample in x:
        value = sample.reshape(shape)
        if in_dtype.kind == "i":
            info = np.iinfo(in_dtype)
            value = np.clip(np.round(value / in_scale) + in_zp, info.min, info.max)
        interp.set_tensor(inp["index"], value.astype(in_dtype))
        interp.invoke()
        result = interp.get_tensor(out["index"])
        if out_dtype.kind == "i":
            result = (result.astype(np.float32) - out_zp) * out_scale
        logits.append(result.reshape(-1))
    ins = {"name": inp["name"], "dtype": in_dtype.name, "scale": in_scale, "zero_point": in_zp,
           "shape": list(shape)}
    outs = {"name": out["name"], "dtype": out_dtype.name, "scale": out_scale, "zero_point": out_zp,
            "shape": [int(s) for s in out["shape"]]}
    return np.stack(logits).astype(np.float32), ins, outs


RUNNERS = {"onnxruntime": run_onnx, "tflite": run_tflite}


def compare(logits: np.ndarray, reference: np.ndarray, y: np.ndarray, precision: str,
            tolerance: float | None) -> dict:
    """The parity numbers of one file: max |Δ logits|, top-1 agreement, accuracy of both."""
    pred, ref_pred = logits.argmax(1), reference.argmax(1)
    diff = float(np.abs(logits - reference).max())
    result = {
        "samples": int(len(y)),
        "max_abs_diff": diff,
        "top1_agreement": float((pred == ref_pred).mean()),
        "accuracy": float((pred == y).mean()),
        "reference_accuracy": float((ref_pred == y).mean()),
    }
    result["accuracy_delta"] = result["accuracy"] - result["reference_accuracy"]
    result["tolerance"] = tolerance
    result["passed"] = bool(tolerance is None or diff <= tolerance)
    result["check"] = f"max_abs_diff <= {tolerance:g}" if tolerance is not None else (
        "reported (top-1 agreement, accuracy)" if precision == "int8" else "reported (max_abs_diff)")
    return result
