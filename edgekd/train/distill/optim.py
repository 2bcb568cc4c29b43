"""Optimizers and the learning-rate schedule of the fit loop: one table (``OPTIMIZERS``), one rule
for weight decay, one schedule.

- ``adam`` (the default: the demo's settings), ``adamw`` (decoupled weight decay, Loshchilov &
  Hutter 2019, arXiv:1711.05101) and ``sgd`` (Nesterov momentum 0.9, the usual choice for ResNets).
- Weight decay applies to weights that multiply (convolutions, linear layers: two or more
  dimensions), never to biases or normalisation scales and shifts, whose decay only fights the
  normalisation (the rule of timm's ``param_groups_weight_decay``).
- The learning rate is a pure function of the epoch, so a run resumed from an epoch checkpoint is
  bit-identical to one that never stopped: a linear warm-up over ``warmup_epochs``, then cosine
  decay over the rest (SGDR without restarts, Loshchilov & Hutter 2017, arXiv:1608.03983).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry

Factory = Callable[[list[dict], float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Factory] = Registry("optimizer", ConfigError)

OPTIMIZERS.register("adam")(lambda groups, lr: torch.optim.Adam(groups, lr=lr))
OPTIMIZERS.register("adamw")(lambda groups, lr: torch.optim.AdamW(groups, lr=lr))
OPTIMIZERS.register("sgd")(lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """The parameters that decay (≥ 2 dimensions) and those that do not (biases, norm scales)."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    keep = [p for p in params if p.ndim <= 1]
    return [group for group in ({"params": decay, "weight_decay": weight_decay},
                                {"params": keep, "weight_decay": 0.0}) if group["params"]]


def build_optimizer(name: str, module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(param_groups(module, weight_decay), lr)


def ordered_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters in the order its state dict numbers them (group by group)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def learning_rate(lr: float, epoch: int, epochs: int, warmup_epochs: int = 0) -> float:
    """The rate of epoch ``epoch`` (0-based): ``lr·(e+1)/(W+1)`` during the warm-up's ``W`` epochs,
    then ``lr·½(1 + cos(π·(e−W)/(E−W)))``; with no warm-up exactly the plain cosine of earlier runs."""
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / (warmup_epochs + 1)
    return lr * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
