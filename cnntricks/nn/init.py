"""Weight initialization (seed §3, "Initializations"; He et al. 2015, "Delving Deep into Rectifiers").

Conv and linear weights are drawn from N(0, σ²), σ set by the layer's fan-in n (the inputs of one
output unit: in_channels / groups · kH · kW for a conv, in_features for a linear layer):

- `calibrated`: σ² = 1/n, the seed's "calibrating the variances with 1/sqrt(n)". A unit's output
  then has the variance of its inputs; right for tanh and sigmoid, which are linear near 0.
- `he_normal`: σ² = 2/n, the seed's "current recommendation" (He et al. 2015). ReLU zeroes half of
  its input, so doubling the variance keeps the signal's second moment constant through depth.
  For a leaky slope a, He et al. derive 2 / ((1 + a²) · n).

Biases start at 0; normalization layers at scale 1 and shift 0.

Not torch's default: nn.Conv2d and nn.Linear draw from U(-1/√n, 1/√n) (kaiming_uniform_ with
a=√5), whose variance is 1/(3n), a third of "calibrated" and a sixth of He's; a deep plain ReLU
net so initialized shrinks its signal at every layer.

Schemes live in the `INITS` registry; a scheme fills one weight tensor in place.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cnntricks.nn.activations import negative_slope as slope_of
from cnntricks.registry import Registry

INITS = Registry("initialization scheme")

# Activations that are linear around 0 and saturate away from it: He's factor 2 (for the half
# that ReLU discards) does not apply, the seed's calibrated 1/n does.
SATURATING = ("tanh", "sigmoid")

WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: weight is (out, in / groups, *kernel) or (out, in)."""
    return weight[0].numel()


@INITS.register("calibrated")
def calibrated(weight: torch.Tensor, activation: str, generator: torch.Generator | None = None) -> None:
    weight.normal_(0.0, 1.0 / math.sqrt(fan_in(weight)), generator=generator)


@INITS.register("he_normal")
def he_normal(weight: torch.Tensor, activation: str, generator: torch.Generator | None = None) -> None:
    slope = slope_of(activation)
    weight.normal_(0.0, math.sqrt(2.0 / ((1.0 + slope**2) * fan_in(weight))), generator=generator)


def scheme_for(activation: str) -> str:
    """The seed's choice of scheme for an activation: calibrated for tanh/sigmoid, else He."""
    return "calibrated" if activation in SATURATING else "he_normal"


def resolve_scheme(init: str, activation: str) -> str:
    """`model.init` as a scheme name: "auto" is the seed's choice for the activation."""
    return scheme_for(activation) if init == "auto" else init


@torch.no_grad()
def initialize(module: nn.Module, scheme: str = "he_normal", activation: str = "relu",
               generator: torch.Generator | None = None) -> nn.Module:
    """Initialize every conv, linear and normalization layer inside `module`, in place.

    `scheme` is a name in `INITS`; `activation` is the non-linearity that follows the layers (He's
    variance depends on its negative slope). Returns `module`, for chaining.
    """
    fill = INITS.get(scheme)
    for layer in module.modules():
        if isinstance(layer, WEIGHTED_LAYERS):
            fill(layer.weight, activation, generator)
            if layer.bias is not None:
                layer.bias.zero_()
        elif isinstance(layer, NORM_LAYERS) and layer.weight is not None:
            layer.weight.fill_(1.0)
            if layer.bias is not None:
                layer.bias.zero_()
    return module
