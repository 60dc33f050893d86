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


def parameter_groups(model: nn.Module, weight_decay: float, penalize: str = "weights",
                     lr_scales: dict[int, float] | None = None) -> list[dict]:
    """Two groups: the tensors that decay (weights, ndim > 1; all with penalize="all") and the rest;
    with `lr_scales` (parameter id -> share of the LR: discriminative fine-tuning, transfer/), two
    per scale, each with its "lr_scale". Frozen tensors (requires_grad False) are in none."""
    decayed = penalized_weights(model, penalize)
    ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    if not lr_scales:
        return [{"params": decayed, "weight_decay": weight_decay},
                {"params": others, "weight_decay": 0.0}]
    scales = sorted({lr_scales.get(id(p), 1.0) for p in decayed + others}, reverse=True)
    return [{"params": [p for p in params if lr_scales.get(id(p), 1.0) == scale], "weight_decay": decay,
             "lr_scale": scale} for scale in scales for params, decay in ((decayed, weight_decay), (others, 0.0))]


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


def create_optimizer(cfg: OptimConfig, model: nn.Module, penalize: str = "weights",
                     lr_scales: dict[int, float] | None = None) -> torch.optim.Optimizer:
    """The optimizer `cfg.name` over `model`'s trainable parameters, weight decay on the `penalize`
    ones, each group's LR scaled by `lr_scales` (see parameter_groups)."""
    factory = OPTIMIZERS.get(cfg.name)
    return factory(cfg, parameter_groups(model, cfg.weight_decay, penalize, lr_scales), decay_mode(cfg))


@torch.no_grad()
def apply_decoupled_decay(optimizer: torch.optim.Optimizer) -> None:
    """w ← w − lr·λ·w for the groups that carry a decoupled decay (SGD with optim.decay=decoupled);
    call it right before `optimizer.step()`, as AdamW does inside its step."""
    for group in optimizer.param_groups:
        decay = group.get("decoupled_decay", 0.0)
        if decay:
            for p in group["params"]:
                if p.grad is not None:  # not a frozen tensor (gradual unfreezing keeps those in the optimizer)
                    p.mul_(1 - group["lr"] * decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's LR into every group, times the group's "lr_scale" (fine-tuning) where it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
