"""Quantization-aware distillation: ``edgekd distill --qat-epochs N``.

After its normal distillation the final student trains N more epochs with int8 fake quantization
in its graph (quantization-aware training: Jacob et al. 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR, arXiv:1712.05877), still from the
teacher's soft targets through the same distillation loss and the same cached teacher logits
(distillation during quantization: Mishra & Marr 2018, "Apprentice: Using Knowledge Distillation
Techniques To Improve Low-Precision Network Accuracy", ICLR, arXiv:1711.05852).

The graph is PyTorch's PT2E flow: ``torch.export`` of the student in training mode, then torchao's
``prepare_qat_pt2e`` with litert-torch's quantizer (int8 per-tensor activations, int8 symmetric
per-channel weights: what the ``tflite-int8`` export's static recipe uses too). ``prepare_qat_pt2e``
keeps each convolution and its BatchNorm apart and simulates their fold (the weight scaled by
gamma/sqrt(running var + eps) before its fake quantization, the BatchNorm trained with batch
statistics), so the trained graph holds the same parameters and buffers under the same names as the
module it came from: they are copied back into it, and the run's student is that float module with
the QAT-trained weights and BatchNorm statistics.

The int8 grids QAT trained with go to export too: each activation fake-quantizer's range, named by
the module that wrote the value (``activation_ranges``, saved in the student's model.json), replaces
the calibrated range of the TFLite tensor that module writes (``edgekd.exporters.qat_ranges``), so
the file computes on the grids the weights were trained for. For that the grids must be the file's:
TFLite fuses a ReLU6 into the convolution before it and quantizes only its output, where litert-torch's
annotation quantizes the BatchNorm's output and shares that grid through the ReLU6 (a grid over
[-a, b] where the file has one over [0, min(b, 6)]); ``_quantize_after_activations`` moves it.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.train.distill.distributed import Rows
from edgekd.train.distill.inference import accuracy
from edgekd.train.distill.train import FitSettings, KDTarget, fit

# QAT fine-tunes a trained model: a tenth of the distillation's learning rate (cosine-decayed again)
# keeps the weights near their trained values while they adapt to the int8 grid
LR_FACTOR = 0.1
QUANTIZER = ("litert-torch PT2EQuantizer, symmetric per-channel int8 weights, int8 activations (QAT), "
             "activations quantized after a fused ReLU/ReLU6 as in TFLite")
EXPORT_NOTE = ("QAT trained the weights and the activation ranges; tflite-int8 export takes the QAT range of every "
               "tensor it can match to the module that wrote it and calibrates the rest (export.json says how many)")
# the activations TFLite fuses into the convolution before them (its int8 output is after them)
FUSED = ("aten.relu.default", "aten.relu_.default", "aten.hardtanh.default", "aten.hardtanh_.default")


@contextlib.contextmanager
def _pattern_modules():
    """litert-torch 0.10's conv+BatchNorm QAT annotator hands a plain function to torchao's pattern
    tracer, which torch.export (2.13) refuses (it takes modules only); wrapped in torchao's own
    WrapperModule (as torchao's own QAT patterns are) the same pattern traces."""
    from litert_torch.quantize import pt2e_quantizer_utils as annotators
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = annotators._get_aten_graph_module_for_pattern

    def traced(pattern, *args, **kwargs):
        return original(pattern if isinstance(pattern, nn.Module) else WrapperModule(pattern), *args, **kwargs)

    annotators._get_aten_graph_module_for_pattern = traced
    try:
        yield
    finally:
        annotators._get_aten_graph_module_for_pattern = original


def prepare(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The student's graph with fake quantization, in training mode, any batch size; its
    ``train()``/``eval()`` switch BatchNorm and dropout as a module's do."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    model.train()       # BatchNorm exported in training form: QAT trains it
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    class TFLiteGrids(PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return _quantize_after_activations(super().annotate(model))

    quantizer = TFLiteGrids().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    with _pattern_modules():
        prepared = prepare_qat_pt2e(graph, quantizer)
    allow_exported_model_train_eval(prepared)
    model.eval()
    return prepared


def _quantize_after_activations(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A ReLU/ReLU6 whose input is quantized (a conv + BatchNorm's output) and read by it alone gets that
    quantization on its own output instead, where the TFLite file has it (see the module's docstring)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    for node in graph.graph.nodes:
        source = node.args[0] if node.op == "call_function" and str(node.target) in FUSED else None
        annotation = source.meta.get("quantization_annotation") if isinstance(source, torch.fx.Node) else None
        spec = annotation.output_qspec if annotation is not None else None
        if annotation is None or spec is None or isinstance(spec, SharedQuantizationSpec) \
                or not isinstance(source, torch.fx.Node) or len(source.users) != 1:
            continue
        annotation.output_qspec = None
        node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=spec, _annotated=True)
    return graph


def observed_modules(prepared: torch.fx.GraphModule) -> dict[str, tuple[str, str]]:
    """Each activation fake-quantizer (by its attribute name) → (the module path of the node whose output
    it quantizes, that node's op), in graph order. Read right after ``prepare``: switching the graph to
    train or eval rewrites its BatchNorm nodes without their module paths."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    modules = dict(prepared.named_modules())
    out = {}
    for node in prepared.graph.nodes:
        quantizer = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(quantizer, FakeQuantizeBase) and quantizer.qscheme == torch.per_tensor_affine:
            source = node.args[0]       # the weights' quantizers are per-channel: not activations
            stack = list((source.meta.get("nn_module_stack") or {}).values())
            path = "(input)" if source.op == "placeholder" else (stack[-1][0] if stack else "")
            out[node.target] = (path, str(source.target))
    return out


def activation_ranges(prepared: torch.fx.GraphModule, observed: dict[str, tuple[str, str]]) -> list[dict]:
    """model.json's ``quantization.activations``: per activation quantizer, its module, op and the float
    range of its int8 grid, (quant_min - zero point) · scale to (quant_max - zero point) · scale: the grid
    itself, which export gives ai-edge-quantizer as min/max (it derives the same scale and zero point)."""
    modules = dict(prepared.named_modules())
    ranges = []
    for name, (module, op) in observed.items():
        quantizer = modules[name]
        scale, zero_point = (float(t.reshape(-1)[0]) for t in quantizer.calculate_qparams())
        ranges.append({"module": module, "op": op, "min": (quantizer.quant_min - zero_point) * scale,
                       "max": (quantizer.quant_max - zero_point) * scale})
    return ranges


def check_student(model: nn.Module, spec: str, input_shape: tuple[int, ...]) -> None:
    """Prepare the untrained student once, so that a student PT2E cannot quantize is refused before training."""
    try:
        prepare(model, torch.zeros(2, *input_shape))
    except Exception as exc:  # export, annotation or fusion: each says in its first line what it met
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"--qat-epochs: the student '{spec}' cannot be prepared for quantization-aware "
                         f"training (torch.export + prepare_qat_pt2e): {first}",
                         hint="drop --qat-epochs: export still quantizes the student after training") from None


def copy_back(prepared: torch.fx.GraphModule, model: nn.Module) -> None:
    """The trained graph's parameters and buffers into the module it was exported from (the
    graph keeps their names; its fake-quantization modules' own state is left behind)."""
    trained = prepared.state_dict()
    missing = [name for name in model.state_dict() if name not in trained]
    if missing:      # a torch/torchao version that renames them would otherwise lose the training
        raise ModelError(f"--qat-epochs: the QAT graph lacks the student's '{missing[0]}' "
                         f"({len(missing)} tensors in all)")
    model.load_state_dict({name: trained[name] for name in model.state_dict()})
    model.eval()


def quantization_aware_distill(model: nn.Module, xy: tuple[Rows, torch.Tensor], settings: FitSettings,
                               kd: KDTarget, epochs: int) -> tuple[dict, list[dict]]:
    """Fine-tune ``model`` in place for ``epochs`` with fake quantization and ``kd``'s loss on
    ``xy`` (the student's training samples); ``settings`` are the student's (its validation set
    scores it before and after). Returns cv.json's ``qat`` record (:class:`edgekd.core.schema.cv.Qat`) and the
    trained activation ranges (``activation_ranges``: for the student's model.json)."""
    from torchao.quantization.pt2e import disable_observer

    x, y = xy
    validation = settings.validation
    assert validation is not None       # the student's settings: its validation set scores the fine-tune
    before = accuracy(model, *validation)
    prepared = prepare(model, x[:2])
    observed = observed_modules(prepared)
    # a fine-tune: no warm-up; an fx graph with fake quantization: eager, fp32, as exported
    result = fit(prepared, x, y, replace(settings, epochs=epochs, lr=settings.lr * LR_FACTOR, warmup_epochs=0,
                                         compile=False, precision="fp32", memory_format="contiguous"), kd=kd)
    prepared.apply(disable_observer)      # the trained ranges stay as trained: scoring must not move them
    simulated = accuracy(prepared, *validation)
    copy_back(prepared, model)
    return {"epochs": epochs, "lr": settings.lr * LR_FACTOR, "seconds": round(result.seconds, 3),
            "accuracy_before": before, "accuracy_after": accuracy(model, *validation),
            "fake_quant_accuracy": simulated, "quantizer": QUANTIZER, "export": EXPORT_NOTE,
            "history": result.history}, activation_ranges(prepared, observed)


def qat_log_line(split: str, record: dict) -> str:
    """train.log's line for a finished QAT fine-tuning."""
    return (f"{split}/student: quantization-aware distillation, {record['epochs']} epochs in {record['seconds']:.1f} s: "
            f"accuracy {record['accuracy_before']:.4f} before, {record['accuracy_after']:.4f} after "
            f"({record['fake_quant_accuracy']:.4f} with fake int8)")

