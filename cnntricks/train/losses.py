"""The training loss (imbalance.loss): cross-entropy, and the losses the long-tail field uses now.

Each loss is `criterion(logits, targets, progress) -> mean loss`, built once per run from the
training split's class counts n_c; `targets` are int64 labels or, with mixup / cutmix, (N, C)
probabilities; `progress` is the share of training done (deferred re-weighting starts by it).
optim.label_smoothing applies to every loss. Only training changes: predictions stay the
argmax of the model's own logits.

  ce                cross-entropy (the default; what the loop always computed)
  class_balanced    cross-entropy weighted per class by (1 - β) / (1 - β^n_c), normalised to sum to C
                    (Cui et al. 2019, "effective number of samples"; imbalance.beta), as a weighted
                    mean the way torch's cross_entropy(weight=) takes it (Cao et al.'s code)
  focal             -(1 - p)^γ log p summed over the target distribution (Lin et al. 2017; imbalance.gamma)
  ldam              cross-entropy with the target logit lowered by a margin Δ_c ∝ n_c^(-1/4), the largest
                    imbalance.max_margin (Cao et al. 2019); ldam_drw adds the class_balanced weights from
                    imbalance.drw_start of training on (deferred re-weighting, their 160 of 200 epochs)
  logit_adjusted    cross-entropy on logits + τ log π_c, π the training class frequencies (Menon et al.
                    2021; imbalance.tau; τ = 1 is the balanced softmax of Ren et al. 2020)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from cnntricks.config import Config
from cnntricks.registry import Registry

LOSSES = Registry("imbalance.loss")
Criterion = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def create_loss(cfg: Config, counts: torch.Tensor) -> Criterion:
    """The run's criterion; `counts`: training images per class (int, on the training device)."""
    return LOSSES.create(cfg.imbalance.loss, cfg, counts.double())


def distribution(targets: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    """(N, C) target probabilities of labels or soft targets, with label smoothing as torch applies it."""
    probs = F.one_hot(targets, classes).float() if targets.dim() == 1 else targets.float()
    return probs * (1 - smoothing) + smoothing / classes if smoothing else probs


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al.'s class weights (1 - β) / (1 - β^n_c), summing to the number of classes present."""
    present = counts > 0
    weights = torch.where(present, (1 - beta) / (1 - beta ** counts.clamp(min=1)), torch.zeros_like(counts))
    return (weights * present.sum() / weights.sum()).float()


@LOSSES.register("ce")
def cross_entropy(cfg: Config, counts: torch.Tensor) -> Criterion:
    smoothing = cfg.optim.label_smoothing
    return lambda logits, targets, progress: F.cross_entropy(logits, targets, label_smoothing=smoothing)


@LOSSES.register("class_balanced")
def class_balanced(cfg: Config, counts: torch.Tensor) -> Criterion:
    weight, smoothing = effective_number_weights(counts, cfg.imbalance.beta), cfg.optim.label_smoothing
    return lambda logits, targets, progress: F.cross_entropy(logits, targets, weight=weight.to(logits.dtype),
                                                             label_smoothing=smoothing)


@LOSSES.register("focal")
def focal(cfg: Config, counts: torch.Tensor) -> Criterion:
    gamma, smoothing = cfg.imbalance.gamma, cfg.optim.label_smoothing

    def criterion(logits: torch.Tensor, targets: torch.Tensor, progress: float) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        target = distribution(targets, logits.shape[1], smoothing)
        return -(target * (1 - log_p.exp()) ** gamma * log_p).sum(1).mean()
    return criterion


def ldam_margins(counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    margins = torch.where(counts > 0, counts.clamp(min=1) ** -0.25, torch.zeros_like(counts))
    return (margins * (max_margin / margins.max())).float()


def ldam_criterion(cfg: Config, counts: torch.Tensor, deferred: bool) -> Criterion:
    margins, smoothing = ldam_margins(counts, cfg.imbalance.max_margin), cfg.optim.label_smoothing
    weight = effective_number_weights(counts, cfg.imbalance.beta)
    start = cfg.imbalance.drw_start

    def criterion(logits: torch.Tensor, targets: torch.Tensor, progress: float) -> torch.Tensor:
        target = distribution(targets, logits.shape[1], 0.0)  # the margin goes where the label is
        shifted = logits - target * margins.to(logits.dtype)
        late = deferred and progress >= start
        return F.cross_entropy(shifted, targets, weight=weight.to(logits.dtype) if late else None,
                               label_smoothing=smoothing)
    return criterion


@LOSSES.register("ldam")
def ldam(cfg: Config, counts: torch.Tensor) -> Criterion:
    return ldam_criterion(cfg, counts, deferred=False)


@LOSSES.register("ldam_drw")
def ldam_drw(cfg: Config, counts: torch.Tensor) -> Criterion:
    return ldam_criterion(cfg, counts, deferred=True)


@LOSSES.register("logit_adjusted")
def logit_adjusted(cfg: Config, counts: torch.Tensor) -> Criterion:
    prior = counts / counts.sum()
    offset = (cfg.imbalance.tau * torch.log(prior.clamp(min=1e-12))).float()
    smoothing = cfg.optim.label_smoothing
    return lambda logits, targets, progress: F.cross_entropy(logits + offset.to(logits.dtype), targets,
                                                             label_smoothing=smoothing)
