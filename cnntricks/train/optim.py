"""Optimizers: SGD with (Nesterov) momentum, the seed's setting, and AdamW; weight decay.

Weight decay applies to conv and linear weights only: decaying biases and norm-layer scales
only shrinks what normalization undoes anyway, and costs accuracy (Jia et al. 2018; airbench).
`regularize.penalize=all` decays them too.

Two kinds of weight decay (`optim.decay`), not to be confused with the L2 penalty of
`regularize.l2` (a term ½·λ·w² in the loss, nn/regularize.py):
- coupled: λ·w is added to the gradient before the optimizer sees it (torch's `weight_decay`
  for SGD; with momentum it is accumulated like any gradient). For plain SGD this is exactly
  the L2 penalty's gradient.
- decoupled (Loshchilov & Hutter 2019, AdamW): after the gradient step, w ← w − lr·λ·w,
  outside momentum and Adam's scaling.
`auto` is coupled for SGD (the default recipe was tuned with it) and decoupled for AdamW.

Registry: `OPTIMIZERS` (optim.name) - sgd, adamw: `(cfg, groups, decay "coupled"/"decoupled") -> optimizer`.
"""
from __future__ import annotations

import torch
from torch import nn

from cnntricks.config import OptimConfig
from cnntricks.nn.regularize import penalized_weights
from cnntricks.registry import Registry

OPTIMIZERS = Registry("optimizer")


def decay_mode(cfg: OptimConfig) -> str:
    if cfg.decay != "auto":
        return cfg.decay
    return "decoupled" if cfg.name == "adamw" else "coupled"


def parameter_groups(model: nn.Module, weight_decay: float, penalize: str = "weights") -> list[dict]:
    """Two groups: the tensors that decay (weights, ndim > 1; all with penalize="all") and the rest."""
    decayed = penalized_weights(model, penalize)
    ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": decayed, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0}]


@OPTIMIZERS.register("sgd")
def sgd(cfg: OptimConfig, groups: list[dict], decay: str) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, the seed's optimizer (§4)."""
    if decay == "decoupled":  # applied by `apply_decoupled_decay`, not through the gradient
        for group in groups:
            group["decoupled_decay"], group["weight_decay"] = group["weight_decay"], 0.0
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


@OPTIMIZERS.register("adamw")
def adamw(cfg: OptimConfig, groups: list[dict], decay: str) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019); with decay="coupled", Adam with λ·w in the gradient
    (what AdamW was made to replace). optim.momentum is beta1."""
    if decay == "coupled":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def create_optimizer(cfg: OptimConfig, model: nn.Module, penalize: str = "weights") -> torch.optim.Optimizer:
    """The optimizer `cfg.name` over `model`'s parameters, weight decay on the `penalize` ones."""
    factory = OPTIMIZERS.get(cfg.name)
    return factory(cfg, parameter_groups(model, cfg.weight_decay, penalize), decay_mode(cfg))


@torch.no_grad()
def apply_decoupled_decay(optimizer: torch.optim.Optimizer) -> None:
    """w ← w − lr·λ·w for the groups that carry a decoupled decay (SGD with optim.decay=decoupled);
    call it right before `optimizer.step()`, as AdamW does inside its step."""
    for group in optimizer.param_groups:
        decay = group.get("decoupled_decay", 0.0)
        if decay:
            for p in group["params"]:
                p.mul_(1 - group["lr"] * decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
