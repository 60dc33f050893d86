"""The head as a linear classifier of frozen features (transfer.strategy=linear, linear@stageK, lp-ft).

The features of every training image are computed once (eval mode, no augmentation: the seed's
"CNN codes"), a multinomial logistic regression is fitted on them (scikit-learn, on standardized
features, as the probes of probe.py), and folded into the model's head: W' = W / sigma,
b' = b - W' mu, so the model itself predicts what the classifier does and every later step (the
report, `cnntricks predict`, further fine-tuning in lp-ft) uses the one model. Seconds, not epochs.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnntricks.transfer.strategy import Freeze, Plan

FIT_ITERATIONS = 500  # L-BFGS steps of the logistic regression


@torch.no_grad()
def features_of(model: nn.Module, model_input, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, F) float32 features of uint8 `images` (model_input: uint8 batch -> what the model reads)."""
    was_training = model.training
    model.eval()
    try:
        parts = [model.forward_features(model_input(images[i:i + batch_size])).float().cpu()
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def fit_classifier(features: np.ndarray, labels: np.ndarray, classes: int, seed: int = 0,
                   class_weight: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weight (classes, F), bias (classes,)) of a logistic regression on standardized `features`,
    folded back to act on the raw features; a class absent from `labels` gets a bias of -30.
    class_weight="balanced": each class weighted by the inverse of its count (classifier re-training)."""
    from sklearn.linear_model import LogisticRegression
    mean, std = features.mean(0), features.std(0) + 1e-6
    classifier = LogisticRegression(max_iter=FIT_ITERATIONS, random_state=seed, class_weight=class_weight)
    classifier.fit((features - mean) / std, labels)
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:  # scikit-learn keeps one row for two classes: logits (0, z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = np.zeros((classes, features.shape[1]))
    bias = np.full(classes, -30.0)
    weight[classifier.classes_], bias[classifier.classes_] = coef / std, intercept - (coef / std) @ mean
    return weight, bias


@torch.no_grad()
def fit_head(model: nn.Module, model_input, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Fit `model.head` as a logistic regression of the frozen features; returns its training loss,
    accuracy, images and seconds."""
    start = time.perf_counter()
    features = features_of(model, model_input, images)
    head = model.head
    weight, bias = fit_classifier(features.numpy().astype(np.float64), labels.cpu().numpy(), head.out_features, seed)
    head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
    head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    logits = head(features.to(head.weight.device, head.weight.dtype)).float()
    targets = labels.to(logits.device)
    return {"loss": float(F.cross_entropy(logits, targets)), "acc": float((logits.argmax(1) == targets).float().mean()),
            "seen": len(images), "seconds": time.perf_counter() - start}


class LinearHead:
    """A loop plug-in: at the start of a fresh run, the head becomes the linear classifier of the
    frozen features; with `plan.head_only` that is the whole training: one epoch line, then stop."""

    every_rank = True  # it changes the model: every process of a torchrun run applies it (plugins.py)

    def __init__(self, plan: Plan):
        self.plan = plan

    def on_fit_start(self, trainer) -> None:
        if trainer.state.step or trainer.state.epoch:  # resumed: the head was fitted before
            return
        fitted = fit_head(trainer.model, trainer.model_input, trainer.train_images, trainer.train_labels,
                          trainer.cfg.train.seed)
        message = (f"head fitted as a logistic regression on the frozen features of {fitted['seen']} images "
                   f"in {fitted['seconds']:.1f} s (training accuracy {fitted['acc']:.4f})")
        trainer.history.event(trainer, "head_fitted", message=message)
        trainer.say(f"transfer: {message}")
        if self.plan.head_only:  # no epochs: the fitted classifier is evaluated and checkpointed as epoch 1
            trainer.state.stop_reason = "linear_classifier"
            trainer.end_epoch(fitted["loss"], fitted["acc"], fitted["seen"], fitted["seconds"], 0.0)


def transfer_plugins(plan: Plan | None) -> list:
    """The loop plug-ins a fine-tuning plan needs (none without model.pretrained)."""
    if plan is None:
        return []
    return [*([Freeze(plan)] if plan.frozen or plan.unfreeze else []), *([LinearHead(plan)] if plan.fit_head else [])]
