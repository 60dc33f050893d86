"""Activation functions by name (seed §5, "Activation Functions").

The seed walks from sigmoid and tanh (saturating: gradients vanish at both ends, and sigmoid's
output is not zero-centred) to ReLU and its leaky variants, which keep a gradient for negative
inputs so a unit cannot die. Each name in `ModelConfig.activation` is a factory here returning a
fresh `nn.Module`, so layers never share one instance (a learnable slope must be per layer).

New activations (PReLU, RReLU, Maxout, ...) register themselves the same way; factories may take
keyword options, which `create_activation(name, **options)` passes through.
"""
from __future__ import annotations

from torch import nn

from cnntricks.registry import Registry

ACTIVATIONS = Registry("activation")

LEAKY_RELU_SLOPE = 0.01  # Maas et al. 2013, the seed's Leaky ReLU; also torch's default

PRELU_INIT = 0.25  # He et al. 2015's initial PReLU slope
RRELU_RANGE = (3.0, 8.0)  # seed §5 (Xu et al. 2015): a ~ U(3, 8), negative slope 1/a in training
RRELU_EVAL_SLOPE = 2 / sum(RRELU_RANGE)  # seed §5: x / ((l + u) / 2) at test time = 2/11

# Slope for negative inputs, per activation name (absent = 0, as for ReLU). Besides the layer,
# He et al. 2015's initialization needs it: variance 2 / ((1 + a²) · fan_in) for slope a.
NEGATIVE_SLOPE: dict[str, float] = {"leaky_relu": LEAKY_RELU_SLOPE, "prelu": PRELU_INIT,
                                    "rrelu": RRELU_EVAL_SLOPE}


def negative_slope(name: str, **options) -> float:
    """The slope for x < 0 that He's initialization should assume for activation `name` built
    with `options` (a leaky_relu's own `negative_slope`, else the table above, else 0)."""
    if name == "leaky_relu" and "negative_slope" in options:
        return float(options["negative_slope"])
    return NEGATIVE_SLOPE.get(name, 0.0)


def create_activation(name: str, **options) -> nn.Module:
    """A new activation module for `name` (one of `ACTIVATIONS.names()`)."""
    return ACTIVATIONS.create(name, **options)


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: float = LEAKY_RELU_SLOPE) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("elu")
def elu() -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register("gelu")
def gelu() -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register("silu")
def silu() -> nn.Module:
    return nn.SiLU()


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    return nn.Sigmoid()
