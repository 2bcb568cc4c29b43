"""Reading a run folder: the models to export (by role), the eval split, calibration samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.train import modelfile
from edgekd.core.schema.manifest import EVAL_FILE
from edgekd.train.data import IMAGE_LAYOUT, TABULAR_LAYOUT
from edgekd.train.data.split import stratified_indices
from edgekd.core.errors import ConfigError, DataError, ModelError
from edgekd.core.npzfile import check_npz
from edgekd.device.runtimes.onnx_external import refuse_external_data
from edgekd.device.runtimes import open_model
from edgekd.core.schema import TRAINED_ROLES
from edgekd.core.schema.model import ModelDoc

CALIBRATION_FILE = "calibration.npz"
OLD_LAYOUTS = {"NC": TABULAR_LAYOUT}  # what edgekd's exporter called it before; read as the same


@dataclass
class Source:
    """One model of the run, ready to export: a torch module, or a brought ONNX file."""

    role: str
    folder: Path
    spec: ModelDoc
    kind: str                         # "torch" (safetensors or pt2) | "onnx"
    module: Any = None                # torch.nn.Module in eval mode (kind "torch")
    program: Any = None               # the torch.export.ExportedProgram of a brought .pt2
    onnx_path: Path | None = None     # kind "onnx"
    parameters: int = 0
    macs: int | None = None
    cache: dict = field(default_factory=dict)
    pixels: bool = False              # the module takes raw 0..255 NHWC pixels (--input uint8: exporters.pixels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.spec["input"]["shape"])

    @property
    def layout(self) -> str:
        layout = self.spec["input"].get("layout")
        if layout:
            return OLD_LAYOUTS.get(str(layout), str(layout))
        rank = len(self.input_shape)
        return {3: IMAGE_LAYOUT, 2: "NHW", 1: TABULAR_LAYOUT}.get(rank, "N" + "?" * rank)

    @property
    def reference_accuracy(self) -> float | None:
        value = (self.spec.get("metrics") or {}).get("test_accuracy")
        return float(value) if value is not None else None

    def example(self, batch: int = 1):
        import torch

        return torch.zeros(batch, *self.input_shape)


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise DataError(f"run folder '{run_dir}' not found",
                        hint="create one with: edgekd distill --out RUN_DIR")
    if not run_dir.is_dir():
        raise DataError(f"'{run_dir}' is not a folder", hint="pass the run folder written by edgekd distill")


def check_bundle_path(run_dir: Path, out: Path) -> None:
    """The bundle may not be, contain, or replace part of the run it is made from (--force would
    delete it): inside the run, only a new entry or an earlier bundle, never a model folder or a file."""
    run, bundle = run_dir.resolve(), out.resolve()
    if bundle == run or run.is_relative_to(bundle):
        raise ConfigError(f"bundle folder '{out}' would replace the run folder '{run_dir}' it is exported from",
                          hint=f"drop --out (default '{run_dir / 'bundle'}') or name a folder outside the run")
    if bundle.is_relative_to(run):
        top = run / bundle.relative_to(run).parts[0]
        if top.name in TRAINED_ROLES or top.is_file():
            raise ConfigError(f"bundle folder '{out}' would replace or write into '{top.name}' "
                              "of the run it is exported from",
                              hint=f"drop --out (default '{run_dir / 'bundle'}') or name a new folder")


def load_source(run_dir: Path, role: str, trust_code: bool = False) -> Source:
    folder = run_dir / role
    if not folder.is_dir():
        present = [r for r in TRAINED_ROLES if (run_dir / r).is_dir()]
        raise ModelError(f"run '{run_dir}' has no {role} model (no folder '{role}/')",
                         hint=f"models in this run: {', '.join(present) or 'none'}; "
                              "is it a complete edgekd distill run? --roles picks which models to export")
    spec = modelfile.read_spec(folder)
    fmt = spec.get("format", "safetensors")
    if fmt == "safetensors":
        module, spec = modelfile.load_model(folder, trust_code)
        src = Source(role, folder, spec, "torch", module=module)
    elif fmt == "pt2":
        program = _load_pt2(folder / "model.pt2")
        src = Source(role, folder, spec, "torch", module=program.module(), program=program)
    elif fmt == "onnx":
        src = Source(role, folder, spec, "onnx", onnx_path=_check_onnx(folder / "model.onnx"))
    else:
        raise ModelError(f"'{folder / modelfile.SPEC}' has unknown format '{fmt}'",
                         hint="known: safetensors, onnx, pt2")
    _fill_counts(src)
    _check_runs(src)
    return src


def _load_pt2(path: Path):
    if not path.is_file():
        raise ModelError(f"no model.pt2 in '{path.parent}'")
    return modelfile.load_program(path, "torch.export program")


def _check_onnx(path: Path) -> Path:
    """A brought file's graph is checked with onnx (nothing runs here; runtimes/ runs models)."""
    import onnx

    if not path.is_file():
        raise ModelError(f"no model.onnx in '{path.parent}'")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelError(f"'{path}' is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    refuse_external_data(path, path.name, ModelError, "ONNX model")
    return path


def _fill_counts(src: Source) -> None:
    spec_params = src.spec.get("parameters")
    spec_macs = src.spec.get("macs")
    if src.kind == "torch":
        import torch

        from edgekd.train.models import count_macs, count_parameters

        src.parameters = int(count_parameters(src.module)) or int(
            sum(t.numel() for t in src.module.state_dict().values() if isinstance(t, torch.Tensor)))
        try:
            src.macs = int(count_macs(src.module, src.input_shape)) or (int(spec_macs) if spec_macs else None)
        except Exception:
            src.macs = int(spec_macs) if spec_macs else None
    else:
        import onnx
        from onnx import numpy_helper

        # counted from the graph's initializers: reading a graph is not running a model
        model = onnx.load(str(src.onnx_path))
        src.parameters = int(spec_params or sum(numpy_helper.to_array(t).size for t in model.graph.initializer))
        src.macs = int(spec_macs) if spec_macs else None


def _check_runs(src: Source) -> None:
    """The model accepts the spec's input shape and yields (batch, num_classes) logits."""
    batch = 1 if src.spec.get("format") == "pt2" else 2
    expected = (batch, int(src.spec["num_classes"]))
    try:
        out = reference_logits(src, np.zeros((batch, *src.input_shape), np.float32))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the {src.role} model does not run on its declared input shape {list(src.input_shape)}: "
                         f"{str(exc).strip().splitlines()[-1][:200]}",
                         hint=f"check 'input.shape' in {src.folder / modelfile.SPEC}") from None
    if tuple(out.shape) != expected:
        raise ModelError(f"the {src.role} model outputs shape {list(out.shape)}, expected {list(expected)} "
                         f"(batch, num_classes)", hint=f"check 'num_classes' in {src.folder / modelfile.SPEC}")


def reference_logits(src: Source, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The reference outputs: PyTorch for a torch model, onnxruntime for a brought ONNX file."""
    if src.kind != "torch":
        assert src.onnx_path is not None        # a brought ONNX file: kind "onnx" always has its path
        return open_model(src.onnx_path, providers=["cpu"]).logits(x, batch)
    import torch

    step = 1 if src.spec.get("format") == "pt2" else batch  # a .pt2 program may have a fixed batch of 1
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), step):
            outs.append(src.module(torch.from_numpy(np.ascontiguousarray(x[i:i + step]))).float().numpy())
    return np.concatenate(outs).astype(np.float32)


def load_eval(run_dir: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    arrays = _run_arrays(run_dir, EVAL_FILE, input_shape, "(the held-out split)",
                         "is it a complete edgekd distill run?")
    x, y, path = arrays["x"], arrays.get("y"), run_dir / EVAL_FILE
    if y is None:
        raise DataError(f"'{path}' has no arrays 'x' and 'y'")
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"'{path}' has {len(x)} samples and {len(y)} labels")
    labels = [str(s) for s in arrays["labels"]] if "labels" in arrays else None   # numpy str_ → str
    return x, y, labels


def load_calibration(run_dir: Path, input_shape: tuple[int, ...], samples: int, seed: int = 0
                     ) -> tuple[np.ndarray, dict]:
    """A sample of the run's calibration split (training data, never eval): stratified by class
    where the file has labels, else a plain seeded random sample (and the info says which).
    ``samples`` is checked by ExportOptions (``check_numbers``), before the run is read."""
    x, y = calibration_pool(run_dir, input_shape)
    index = calibration_indices(y if y is not None else np.zeros(len(x), np.int64), samples, seed)
    info = {"samples": len(index), "source": f"{CALIBRATION_FILE} (training split)", "stratified": y is not None,
            "seed": seed, "available": len(x)}
    if y is not None:
        chosen = y[index]
        info["per_class"] = {str(int(c)): int((chosen == c).sum()) for c in np.unique(chosen)}
    return x[index], info


def calibration_indices(y: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """Which samples of the pool calibrate (--keep-float auto measures on the others)."""
    return stratified_indices(y, samples, seed)


def calibration_pool(run_dir: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) of the run's calibration.npz, a pool of training samples; y is None in a file without labels."""
    arrays = _run_arrays(run_dir, CALIBRATION_FILE, input_shape, "(training samples for int8 calibration)",
                         "int8 formats need it; re-run edgekd distill, or export without int8: --formats onnx")
    return arrays["x"], arrays.get("y")


#: the arrays of a run's split and what they are read as (labels: the class names)
SPLIT_ARRAYS = {"x": np.float32, "y": np.int64, "labels": str}


def _run_arrays(run_dir: Path, name: str, input_shape: tuple[int, ...], what: str, hint: str) -> dict[str, np.ndarray]:
    """The arrays of a run's .npz split (x as float32 of the model's input shape, y as int64 when
    there), checked before numpy reads it (:func:`check_npz`); one DataError otherwise."""
    path = run_dir / name
    if not path.is_file():
        raise DataError(f"run '{run_dir}' has no {name} {what}", hint=hint)
    check_npz(path, DataError)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data:
                raise DataError(f"'{path}' has no array 'x'")
            arrays = {key: data[key].astype(kind) for key, kind in SPLIT_ARRAYS.items() if key in data}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read '{path}': {exc}") from None
    if tuple(arrays["x"].shape[1:]) != tuple(input_shape):
        raise DataError(f"'{path}' holds samples of shape {list(arrays['x'].shape[1:])}, "
                        f"the model expects {list(input_shape)}")
    return arrays
