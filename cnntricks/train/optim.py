"""Optimizers: SGD with (Nesterov) momentum, the seed's setting, and AdamW.

Weight decay applies to conv and linear weights only: decaying biases and norm-layer scales
only shrinks what normalization undoes anyway, and costs accuracy (Jia et al. 2018; airbench).
"""
from __future__ import annotations

import torch
from torch import nn

from cnntricks.config import OptimConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights (ndim > 1) decay, biases and norm parameters (ndim <= 1) do not."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": weights, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0}]


def create_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
