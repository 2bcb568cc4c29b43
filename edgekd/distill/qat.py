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
the QAT-trained weights and BatchNorm statistics. Export then calibrates it afresh (its activation
ranges are not carried over: see ``EXPORT_NOTE``).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch import nn

from ..errors import ModelError
from .train import FitSettings, KDTarget, accuracy, fit

# QAT fine-tunes a trained model: a tenth of the distillation's learning rate (cosine-decayed again)
# keeps the weights near their trained values while they adapt to the int8 grid
LR_FACTOR = 0.1
QUANTIZER = "litert-torch PT2EQuantizer, symmetric per-channel int8 weights, int8 activations (QAT)"
EXPORT_NOTE = ("QAT trained the weights; export re-calibrates the activation ranges on training samples "
               "(the QAT observers' ranges are not carried into the TFLite file)")


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
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    with _pattern_modules():
        prepared = prepare_qat_pt2e(graph, quantizer)
    allow_exported_model_train_eval(prepared)
    model.eval()
    return prepared


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


def quantization_aware_distill(model: nn.Module, xy: tuple[torch.Tensor, torch.Tensor], settings: FitSettings,
                               kd: KDTarget, epochs: int) -> dict:
    """Fine-tune ``model`` in place for ``epochs`` with fake quantization and ``kd``'s loss on
    ``xy`` (the student's training samples); ``settings`` are the student's (its validation set
    scores it before and after). Returns cv.json's ``qat`` record (:class:`edgekd.schema.cv.Qat`)."""
    x, y = xy
    validation = settings.validation
    before = accuracy(model, *validation)
    prepared = prepare(model, x[:2])
    result = fit(prepared, x, y, replace(settings, epochs=epochs, lr=settings.lr * LR_FACTOR), kd=kd)
    simulated = accuracy(prepared, *validation)
    copy_back(prepared, model)
    return {"epochs": epochs, "lr": settings.lr * LR_FACTOR, "seconds": round(result.seconds, 3),
            "accuracy_before": before, "accuracy_after": accuracy(model, *validation),
            "fake_quant_accuracy": simulated, "quantizer": QUANTIZER, "export": EXPORT_NOTE,
            "history": result.history}


def qat_log_line(split: str, record: dict) -> str:
    """train.log's line for a finished QAT fine-tuning."""
    return (f"{split}/student: quantization-aware distillation, {record['epochs']} epochs in {record['seconds']:.1f} s: "
            f"accuracy {record['accuracy_before']:.4f} before, {record['accuracy_after']:.4f} after "
            f"({record['fake_quant_accuracy']:.4f} with fake int8)")

