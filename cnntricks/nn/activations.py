"""Activation functions by name (seed §5, "Activation Functions"; the slides' Maxout).

The seed walks from sigmoid and tanh (saturating: gradients vanish at both ends, and sigmoid's
output is not zero-centred) to ReLU and its leaky variants, which keep a gradient for negative
inputs so a unit cannot die: Leaky ReLU (fixed slope), PReLU (learned slope), RReLU (random slope
in training, fixed in testing), and the slides' Maxout, the max of k linear pieces. Each name in
`ModelConfig.activation` is a factory here returning a fresh `nn.Module`, so layers never share
one instance (a learnable slope must be per layer).

Options. A model passes one dict of options to every activation it builds, whatever the name:
`activation_options(cfg)` (negative_slope, mode, pieces) plus `channels` at each use. Each
factory takes the options its signature names and `create_activation` drops the rest, so
`negative_slope` reaches leaky_relu only; an option that no factory takes is an error, so a typo
is not silently ignored. `width_factor` says how many channels the layer before an activation
must produce per output channel (k for maxout, 1 otherwise).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from cnntricks.registry import Registry, closest

ACTIVATIONS = Registry("activation")

LEAKY_RELU_SLOPE = 0.01  # Maas et al. 2013, the seed's Leaky ReLU; also torch's default

PRELU_INIT = 0.25  # He et al. 2015's initial PReLU slope
RRELU_RANGE = (3.0, 8.0)  # seed §5 (Xu et al. 2015): a ~ U(3, 8), negative slope 1/a in training
RRELU_EVAL_SLOPE = 2 / sum(RRELU_RANGE)  # seed §5: x / ((l + u) / 2) at test time = 2/11
MAXOUT_PIECES = 2  # the slides: max(w1ᵀx + b1, w2ᵀx + b2)

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


def width_factor(name: str, **options) -> int:
    """Channels the layer before activation `name` must output per channel the activation
    outputs: maxout's k pieces (`pieces`), 1 for every other activation."""
    return int(options.get("pieces", MAXOUT_PIECES)) if name == "maxout" else 1


def activation_options(cfg, channels: int | None = None) -> dict:
    """The activation options of a `ModelConfig` (any object with its fields), named as the
    factories take them: model.negative_slope -> negative_slope, model.prelu -> mode,
    model.maxout_pieces -> pieces; plus `channels` (PReLU's slope count) when given."""
    options = {"negative_slope": cfg.negative_slope, "mode": cfg.prelu, "pieces": cfg.maxout_pieces}
    if channels is not None:
        options["channels"] = channels
    return options


def option_names() -> set[str]:
    """Every option some registered activation factory takes."""
    return {option for name in ACTIVATIONS.names()
            for option in inspect.signature(ACTIVATIONS.get(name)).parameters}


def create_activation(name: str, **options) -> nn.Module:
    """A new activation module for `name` (one of `ACTIVATIONS.names()`).

    The factory gets the `options` its signature names; the others are dropped (see the module
    docstring), unless no activation takes them, which is an error.
    """
    factory = ACTIVATIONS.get(name)
    known = option_names()
    for option in options:
        if option not in known:
            raise ValueError(f"activation option '{option}'{closest(option, known)} is taken by no "
                             f"activation; known options: {', '.join(sorted(known))}")
    accepted = inspect.signature(factory).parameters
    return factory(**{key: value for key, value in options.items() if key in accepted})


class RandomizedReLU(nn.Module):
    """RReLU as the seed defines it (Xu et al. 2015, the NDSB winner's setting): for x < 0,
    y = x / a with a ~ U(lower, upper) = U(3, 8) drawn per element in training, so slopes lie in
    [1/8, 1/3] with 1/U(3, 8)'s distribution (denser near 1/8, mean ln(8/3)/5 ≈ 0.196); in
    evaluation y = x · 2 / (lower + upper) = x · 2/11 (the seed's "expectation", 1/E[a]).

    Not torch's nn.RReLU, which differs twice: it draws the slope itself uniformly in
    [lower, upper] = [1/8, 1/3] and evaluates at (lower + upper) / 2 = 11/48 ≈ 0.229.
    Draws from the global RNG (as nn.Dropout) unless given a `generator` on the input's device.
    """

    def __init__(self, lower: float = RRELU_RANGE[0], upper: float = RRELU_RANGE[1],
                 generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < lower <= upper:
            raise ValueError(f"rrelu: need 0 < lower <= upper for a ~ U(lower, upper), got ({lower}, {upper})")
        self.lower, self.upper, self.generator = lower, upper, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # empty_like keeps x's dtype (bf16 under autocast) and memory format (channels_last)
            slope = torch.empty_like(x).uniform_(self.lower, self.upper, generator=self.generator).reciprocal_()
        else:
            slope = 2.0 / (self.lower + self.upper)
        return torch.where(x >= 0, x, x * slope)

    def extra_repr(self) -> str:
        return f"a~U({self.lower:g}, {self.upper:g}), eval_slope={2.0 / (self.lower + self.upper):.4f}"


class Maxout(nn.Module):
    """The slides' Maxout (Goodfellow et al. 2013): each output unit is the max of k linear pieces,
    max(w1ᵀx + b1, ..., wkᵀx + bk), computed by the layer before, which outputs k·C channels.

    (N, k·C, ...) -> (N, C, ...): output channel j is the max over the k consecutive input
    channels j·k, ..., j·k + k - 1. Generalizes ReLU (a piece at 0) and Leaky ReLU; does not
    saturate or die; the price is k times the preceding layer's parameters.
    """

    def __init__(self, pieces: int = MAXOUT_PIECES):
        super().__init__()
        if pieces < 2:
            raise ValueError(f"maxout: pieces must be >= 2 (one piece is a linear layer), got {pieces}")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] % self.pieces:
            raise ValueError(f"maxout: expected (N, k·C, ...) with k = {self.pieces} pieces per unit, got "
                             f"shape {tuple(x.shape)}; the layer before must output {self.pieces}x its width")
        units = x.shape[1] // self.pieces
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # reduce in (N, H, W, k·C) order so the result stays channels_last, without a copy
            return x.permute(0, 2, 3, 1).unflatten(3, (units, self.pieces)).amax(4).permute(0, 3, 1, 2)
        return x.unflatten(1, (units, self.pieces)).amax(2)  # (N, k·C, ...) -> (N, C, k, ...) -> (N, C, ...)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: float = LEAKY_RELU_SLOPE) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("prelu")
def prelu(channels: int | None = None, mode: str = "channel") -> nn.Module:
    """He et al. 2015's learned slope, from 0.25: one per channel (dim 1 of (N, C, H, W) or (N, C))
    or one per layer ("shared"). Without `channels` the layer has one slope, as torch's default."""
    if mode not in ("channel", "shared"):
        raise ValueError(f"prelu: unknown mode '{mode}'; choose 'channel' (one slope per channel) or 'shared'")
    return nn.PReLU(channels if mode == "channel" and channels else 1, init=PRELU_INIT)


@ACTIVATIONS.register("rrelu")
def rrelu() -> nn.Module:
    return RandomizedReLU(*RRELU_RANGE)


@ACTIVATIONS.register("maxout")
def maxout(pieces: int = MAXOUT_PIECES) -> nn.Module:
    return Maxout(pieces)


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
