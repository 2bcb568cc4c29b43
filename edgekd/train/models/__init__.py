"""The model zoo: ``@register_model`` builders, made from specs like ``cnn:width=64,depth=3``.

A spec is a zoo name plus ``key=value`` options, or your own factory (:mod:`.user`); ``build``
turns it into a torch module for a given input shape (without the batch dimension) and class
count, so the same spec fits digits (1x8x8), MNIST (1x28x28), CIFAR-like (3x32x32) or tabular (F,) data.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.core.registry import Registry
from edgekd.train.models.spec import FACTS, call_factory, parse_named, read_options

__all__ = ["MODELS", "FAMILIES", "register_model", "parse_spec", "build", "count_parameters", "count_macs",
           "call_factory", "read_options", "FACTS"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", ModelError, listing="edgekd models")
#: each zoo name's family: the configurable builder that a named variant fixes options of (resnet8: resnet)
FAMILIES: dict[str, str] = {}


Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(name: str, family: str | None = None) -> Callable[[Builder], Builder]:
    """``@register_model("cnn")`` on a builder whose keyword parameters are the spec's options;
    ``family``: the builder that a named variant is (default: the name itself)."""
    def add(builder: Builder) -> Builder:
        read_options(builder)  # an option type the spec cannot express fails at import, not on a user's spec
        MODELS.register(name)(builder)
        FAMILIES[name] = family or name
        return builder
    return add


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cnn:width=8,depth=2"`` → ``("cnn", {"width": 8, "depth": 2})``, typed by the builder."""
    name, _, options = parse_named(spec, MODELS)
    return name, options


#: far beyond any edge model (1 GB of float32 weights, 4 GB with Adam's state and the gradients)
MAX_PARAMETERS = 250_000_000


def build(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of ``spec``, after its size is known: it is built once on the meta device
    (shapes, no memory), since ``cnn:width=1000000000`` would ask the allocator for 36 GB.
    A ``MODULE:FACTORY`` or ``FILE.py:FACTORY`` spec is the user's own code (:mod:`.user`)."""
    from edgekd.train.models.user import build_user, parse_user_spec  # here: user.py reads this package's registry

    user = parse_user_spec(spec)
    if user is not None:
        return build_user(user, input_shape, num_classes)
    name, options = parse_spec(spec)
    builder = MODELS.get(name)
    hint = "choose a smaller width, depth or hidden size"
    try:
        with torch.device("meta"):
            parameters = count_parameters(call_factory(builder, input_shape, num_classes, options))
    except RuntimeError as exc:      # even its shapes overflow: "Storage size calculation overflowed"
        raise ModelError(f"model '{spec}' is too large to build: {str(exc).splitlines()[0]}", hint=hint) from None
    except TypeError as exc:
        raise ModelError(f"bad options for model '{name}': {exc}") from None
    if parameters > MAX_PARAMETERS:
        raise ModelError(f"model '{spec}' is too large: {parameters:,} parameters, more than edgekd builds "
                         f"({MAX_PARAMETERS:,})", hint=hint)
    return call_factory(builder, input_shape, num_classes, options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample, counted by torch's FlopCounterMode on the aten ops the
    forward pass runs, whatever module they sit in (Conv1d/2d/3d, transposed and grouped convolutions,
    Linear, matmul, bmm, attention): each of its formulas is 2 FLOPs per multiply-accumulate.
    Element-wise work (norms, activations, pooling, means) counts nothing, as in the usual MAC count."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


from edgekd.train.models import zoo  # noqa: E402,F401  (registers the built-in models)
from edgekd.train.models import resnet  # noqa: E402,F401
from edgekd.train.models import mobilenet, efficientnet_lite  # noqa: E402,F401
