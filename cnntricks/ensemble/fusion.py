"""Fusion (seed §8): how the members' outputs become one prediction.

Late fusion reads the members' logits:
  mean      the mean of the members' probabilities (nothing fitted)
  vote      the majority class; ties go to the higher mean probability (nothing fitted); its
            probabilities are the vote shares mixed with a little of the mean probability, so a
            negative log-likelihood exists
  weighted  a weighted mean of the probabilities, the weights (a softmax, so positive and summing to
            one) fitted on the validation split to minimize its negative log-likelihood
  stack     a meta-classifier (logistic regression) on the members' validation log-probabilities,
            side by side (stacking, Wolpert 1992)
Early fusion reads the members' penultimate features:
  features  the features side by side and one linear classifier (logistic regression) fitted on the
            training split's features (the seed's "early fusion")

Every fusion gives log-probabilities (N, classes). What is fitted is fitted on the validation or the
training split only, never the test split; `state()` is what the ensemble directory keeps of it.

Out-of-fold fitting. Members that are the k runs of a k-fold cross-validation (data.folds=k, one per
fold) form a group; several groups (other configs, the top trials of a cross-validated search) may be
fused. Their validation images differ, but together a group has seen every training image exactly
once as validation: its out-of-fold prediction. `weighted` and `stack` then fit on the groups'
out-of-fold outputs (one "member" per group), and at prediction a group is the mean of its members'
probabilities (stacking on out-of-fold predictions, Wolpert 1992; Breiman 1996).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from cnntricks.registry import Registry
from cnntricks.transfer.head import fit_classifier

FUSIONS = Registry("ensemble fusion")


@dataclass
class Outputs:
    """What the members say about one split: each member's float32 logits (N, classes) and, where the
    fusion reads them, each member's penultimate features (N, F_m); the split's labels."""
    logits: list[torch.Tensor]
    labels: torch.Tensor
    features: list[torch.Tensor] | None = None


def group_mean(outputs: Outputs, groups: list[int]) -> Outputs:
    """One "member" per group: the log of its members' mean probability (a k-fold group at prediction)."""
    if len(groups) != len(outputs.logits):
        raise ValueError(f"{len(outputs.logits)} members but {len(groups)} group labels")
    fused = [safe_log(mean_probabilities([m for m, g in zip(outputs.logits, groups) if g == group]))
             for group in sorted(set(groups))]
    return Outputs(fused, outputs.labels, None)


class Fusion(ABC):
    """A fusion: `fit` on the validation (and for early fusion the training) outputs, then `log_probs`.
    With `groups` (one label per member, set before an out-of-fold fit) the fitted fusions read one
    output per group: what `fit` is given, and what `log_probs` makes of the members' outputs."""
    name = ""
    reads_features = False   # early fusion: the members' features, not their logits
    fits_on: str | None = None  # "validation", "training" or None (nothing fitted)
    groups: list[int] | None = None

    def fit(self, val: Outputs | None, train: Outputs | None, seed: int = 0) -> None:
        """Nothing to fit by default."""

    def log_probs(self, outputs: Outputs) -> torch.Tensor:
        """(N, classes) log-probabilities of the fused prediction."""
        return self.fused(group_mean(outputs, self.groups) if self.groups else outputs)

    @abstractmethod
    def fused(self, outputs: Outputs) -> torch.Tensor:
        """(N, classes) log-probabilities of the fused prediction of these (per-group) outputs."""

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted tensors (saved in fusion.safetensors), with the groups; `load` reads them back."""
        groups = {"groups": torch.tensor(self.groups, dtype=torch.int64)} if self.groups else {}
        return {**self.fitted(), **groups}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.groups = tensors["groups"].tolist() if "groups" in tensors else None
        self.restore(tensors)

    def fitted(self) -> dict[str, torch.Tensor]:
        """The tensors the fit found; none by default."""
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Read back what `fitted` gave; nothing by default."""

    def describe(self) -> dict:
        """What the fit found, for ensemble.json and the report (JSON)."""
        return {}


def mean_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.softmax(member.double(), 1) for member in logits]).mean(0)


def safe_log(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities.clamp_min(1e-12).log().float()


@FUSIONS.register("mean")
class Mean(Fusion):
    name = "mean"

    def fused(self, outputs: Outputs) -> torch.Tensor:
        return safe_log(mean_probabilities(outputs.logits))


@FUSIONS.register("vote")
class Vote(Fusion):
    name = "vote"

    def fused(self, outputs: Outputs) -> torch.Tensor:
        members = len(outputs.logits)
        classes = outputs.logits[0].shape[1]
        votes = torch.stack([torch.nn.functional.one_hot(m.argmax(1), classes) for m in outputs.logits]).double()
        shares = votes.mean(0)
        # eps < 1 / (M + 1): one vote more always outweighs the mean probability, which breaks ties
        eps = 0.5 / (members + 1)
        return safe_log((1 - eps) * shares + eps * mean_probabilities(outputs.logits))


@FUSIONS.register("weighted")
class Weighted(Fusion):
    name = "weighted"
    fits_on = "validation"

    def __init__(self):
        self.weights: torch.Tensor | None = None

    def fit(self, val: Outputs | None, train: Outputs | None, seed: int = 0) -> None:
        """Weights softmax(a) minimizing the validation NLL of the weighted mean (L-BFGS from equal
        weights: identical members stay equal)."""
        probabilities = torch.stack([torch.softmax(m.double(), 1) for m in val.logits])  # (M, N, C)
        picked = probabilities[:, torch.arange(len(val.labels)), val.labels.long()]  # (M, N)
        a = torch.zeros(len(val.logits), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([a], lr=1, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = -(torch.softmax(a, 0) @ picked).clamp_min(1e-12).log().mean()
            loss.backward()
            return loss
        optimizer.step(closure)
        self.weights = torch.softmax(a.detach(), 0)

    def fused(self, outputs: Outputs) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(m.double(), 1) for m in outputs.logits])
        return safe_log(torch.einsum("m,mnc->nc", self.weights.double(), probabilities))

    def fitted(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.float()}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.weights = tensors["weights"].double()

    def describe(self) -> dict:
        return {"weights": [round(float(w), 6) for w in self.weights]}


class LinearOn(Fusion):
    """A logistic regression on side-by-side member outputs (stacking and early fusion)."""

    def __init__(self):
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    @abstractmethod
    def inputs(self, outputs: Outputs) -> torch.Tensor:
        """(N, F) what the logistic regression reads."""

    def fit(self, val: Outputs | None, train: Outputs | None, seed: int = 0) -> None:
        source = val if self.fits_on == "validation" else train
        classes = source.logits[0].shape[1]
        weight, bias = fit_classifier(self.inputs(source).double().numpy(), source.labels.cpu().numpy(), classes,
                                      seed)
        self.weight, self.bias = torch.as_tensor(weight), torch.as_tensor(bias)

    def fused(self, outputs: Outputs) -> torch.Tensor:
        scores = self.inputs(outputs).double() @ self.weight.double().T + self.bias.double()
        return torch.log_softmax(scores, 1).float()

    def fitted(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.float(), "bias": self.bias.float()}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.weight, self.bias = tensors["weight"].double(), tensors["bias"].double()

    def describe(self) -> dict:
        return {"inputs": int(self.weight.shape[1])}


@FUSIONS.register("stack")
class Stack(LinearOn):
    name = "stack"
    fits_on = "validation"

    def inputs(self, outputs: Outputs) -> torch.Tensor:
        return torch.cat([torch.log_softmax(m.double(), 1) for m in outputs.logits], 1)


@FUSIONS.register("features")
class Features(LinearOn):
    name = "features"
    reads_features = True
    fits_on = "training"

    def inputs(self, outputs: Outputs) -> torch.Tensor:
        if outputs.features is None:
            raise ValueError("the features fusion needs the members' features")
        return torch.cat([f.double() for f in outputs.features], 1)


def create_fusion(name: str) -> Fusion:
    return FUSIONS.create(name)


def disagreement(logits: list[torch.Tensor]) -> np.ndarray:
    """(M, M): the share of images on which members i and j predict different classes."""
    predictions = torch.stack([m.argmax(1) for m in logits])
    return (predictions[:, None, :] != predictions[None, :, :]).double().mean(2).numpy()


def calibration_error(log_probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017): the confidence-weighted gap between the top
    probability and the accuracy, in `bins` equal-width confidence bins."""
    probabilities = log_probs.double().exp()
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels.to(predicted.device)).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence, edges[1:-1])  # bin b: (edges[b], edges[b + 1]]
    total = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            total += float(chosen.double().mean() * (confidence[chosen].mean() - correct[chosen].mean()).abs())
    return total
