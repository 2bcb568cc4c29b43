"""The model zoo: ``@register_model`` builders, made from specs like ``cnn:width=64,depth=3``.

A spec is a zoo name plus ``key=value`` options; ``build`` turns it into a torch module
for a given input shape (without the batch dimension) and class count, so the same
spec fits digits (1x8x8), MNIST (1x28x28), CIFAR-like (3x32x32) or tabular (F,) data.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError, unknown_name
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", ModelError)
register_model = MODELS.register


def parse_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``"cnn:width=8,depth=2"`` → ``("cnn", {"width": 8, "depth": 2})``."""
    name, _, rest = spec.partition(":")
    known = model_options(name)
    options: dict[str, int] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ModelError(f"model option '{item}' in '{spec}' is not key=value",
                             hint="example: cnn:width=64,depth=3")
        if key.strip() not in known:
            raise unknown_name(f"option of model '{name}':", key.strip(), known, ModelError)
        if key.strip() in options:       # the last one would win silently
            raise ModelError(f"model option '{key.strip()}' is given twice in '{spec}'", hint="give each option once")
        try:
            options[key.strip()] = int(value)
        except ValueError:
            raise ModelError(f"model option '{key}' in '{spec}' must be an integer, got '{value}'") from None
        if options[key.strip()] <= 0:
            raise ModelError(f"model option '{key}' in '{spec}' must be positive")
    return name, options


def model_options(name: str) -> list[str]:
    """The ``key=value`` options a zoo model takes: its builder's keyword arguments
    after the input shape and class count."""
    parameters = list(inspect.signature(MODELS.get(name)).parameters.values())[2:]
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


#: far beyond any edge model (1 GB of float32 weights, 4 GB with Adam's state and the gradients)
MAX_PARAMETERS = 250_000_000


def build(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of ``spec``, after its size is known: it is built once on the meta device
    (shapes, no memory), since ``cnn:width=1000000000`` would ask the allocator for 36 GB."""
    name, options = parse_spec(spec)
    builder = MODELS.get(name)
    hint = "choose a smaller width, depth or hidden size"
    try:
        with torch.device("meta"):
            parameters = count_parameters(builder(tuple(input_shape), num_classes, **options))
    except RuntimeError as exc:      # even its shapes overflow: "Storage size calculation overflowed"
        raise ModelError(f"model '{spec}' is too large to build: {str(exc).splitlines()[0]}", hint=hint) from None
    except TypeError as exc:
        raise ModelError(f"bad options for model '{name}': {exc}") from None
    if parameters > MAX_PARAMETERS:
        raise ModelError(f"model '{spec}' is too large: {parameters:,} parameters, more than edgekd builds "
                         f"({MAX_PARAMETERS:,})", hint=hint)
    return builder(tuple(input_shape), num_classes, **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample through every Conv2d and Linear layer."""
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal macs
        macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return int(macs)


from . import zoo  # noqa: E402,F401  (registers the built-in models)
