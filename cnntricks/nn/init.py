"""Weight initialization (seed §3, "Initializations"; He et al. 2015; Glorot & Bengio 2010;
Saxe et al. 2014; Mishkin & Matas 2016, "All you need is a good init").

A scheme fills the weight of one conv or linear layer. n is the layer's fan-in, the inputs of one
output unit (in_channels / groups · kH · kW for a conv, in_features for a linear layer); fan-out
is the outputs one input feeds (out_channels · kH · kW / groups, or out_features). a is the
activation's negative slope (0 for ReLU, 0.01 for leaky ReLU, ...).

- `zeros`: all 0, the seed's cautionary tale. Every unit of a layer computes the same output and
  gets the same gradient, so the units never become different. `constant` (0.01 by default) is
  the same trap with a non-zero value. Both are kept to show the failure, not to be used.
- `small_normal`: 0.001 · N(0, 1), the seed's "small random numbers"; breaks the symmetry, but
  each layer multiplies the signal's scale by about 0.001 · √n, so deep nets start at zero.
- `small_uniform`: uniform with the same std 0.001 (bound 0.001 · √3); the seed: "relatively
  little impact".
- `calibrated`: N(0, 1/n), the seed's `randn(n) / sqrt(n)`: a unit's output has the variance of
  its inputs; right for tanh and sigmoid, which are linear near 0.
- `xavier_normal`, `xavier_uniform` (Glorot): variance 2 / (fan_in + fan_out), a compromise
  between the forward (1/fan_in) and the backward (1/fan_out) pass. torch's xavier_* take
  fan-out of a grouped conv as out_channels · kH · kW, not divided by groups.
- `he_normal`, `he_uniform`: variance 2 / ((1 + a²) · n), the seed's "current recommendation"
  (2/n for ReLU): ReLU zeroes half its input, so doubling the variance keeps the signal's second
  moment through depth. The uniform bound is √(6 / ((1 + a²) · n)).
- `orthogonal` (Saxe et al.): the weight viewed as (out, n) gets orthonormal rows (columns when
  out > n), times a gain: √(2 / (1 + a²)) after rectifiers, 1 otherwise (tanh, sigmoid, ...).
- `lsuv` (Mishkin & Matas 2016, beyond the seed): orthogonal, then each layer in forward order is
  rescaled until its output variance on a real batch is 1. The second step needs data, so a
  scheme alone (`initialize(model, "lsuv")`) does only the orthogonal step; `lsuv_(model, batch)`
  does both.

Biases start at 0; normalization layers at scale 1 and shift 0.

Not torch's default: nn.Conv2d and nn.Linear draw from U(-1/√n, 1/√n) (kaiming_uniform_ with
a=√5), whose variance is 1/(3n), a third of "calibrated" and a sixth of He's; a deep plain ReLU
net so initialized shrinks its signal at every layer.

Schemes live in the `INITS` registry; each is `fill(weight, activation, generator=None, *,
negative_slope=None, groups=1)`, draws only from `generator` (None: torch's global one) and
fills the weight in place.
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
# Activations that discard (about) the negative half of their input: orthogonal's gain is He's.
RECTIFIERS = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "gelu", "silu")

SMALL_STD = 0.001  # seed §3: "weights ~ 0.001 × N(0,1)"
CONSTANT_VALUE = 0.01  # any one value shows the symmetry trap; 0.01 keeps the signal small but alive
SYMMETRIC = ("zeros", "constant")  # schemes that give every unit the same weights: no randomness

WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: weight is (out, in / groups, *kernel) or (out, in)."""
    return weight[0].numel()


def fan_out(weight: torch.Tensor, groups: int = 1) -> int:
    """Outputs one input feeds: out / groups · kernel size (a grouped conv's input sees one group)."""
    return weight.shape[0] * weight[0, 0].numel() // groups


def slope_for(activation: str, negative_slope: float | None = None) -> float:
    """`negative_slope` when given (a configured leaky ReLU), else the activation's default."""
    return slope_of(activation) if negative_slope is None else float(negative_slope)


def he_variance(weight: torch.Tensor, activation: str, negative_slope: float | None = None) -> float:
    """He et al. 2015: 2 / ((1 + a²) · n); seed §3's "2.0/n" for ReLU (a = 0)."""
    return 2.0 / ((1.0 + slope_for(activation, negative_slope) ** 2) * fan_in(weight))


def draw(weight: torch.Tensor, variance: float, distribution: str, generator: torch.Generator | None) -> None:
    """Zero-mean normal, or uniform on ±√(3·variance), with that variance (Keras' VarianceScaling)."""
    if distribution == "normal":
        weight.normal_(0.0, math.sqrt(variance), generator=generator)
    else:
        bound = math.sqrt(3.0 * variance)
        weight.uniform_(-bound, bound, generator=generator)


def orthogonal_gain(activation: str, negative_slope: float | None = None) -> float:
    """√(2 / (1 + a²)) after a rectifier (He's factor for the half it discards), 1 otherwise."""
    if activation in RECTIFIERS or negative_slope is not None:
        return math.sqrt(2.0 / (1.0 + slope_for(activation, negative_slope) ** 2))
    return 1.0


# Every scheme has one signature so `initialize` can call any of them; most ignore the keywords.

@INITS.register("zeros")
def zeros(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    weight.zero_()  # seed §3: "no source of asymmetry between neurons"


@INITS.register("constant")
def constant(weight, activation, generator=None, *, negative_slope=None, groups=1,
             value: float = CONSTANT_VALUE) -> None:
    weight.fill_(value)


@INITS.register("small_normal")
def small_normal(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    draw(weight, SMALL_STD**2, "normal", generator)


@INITS.register("small_uniform")
def small_uniform(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    draw(weight, SMALL_STD**2, "uniform", generator)  # bound 0.001·√3: the same std as small_normal


@INITS.register("calibrated")
def calibrated(weight: torch.Tensor, activation: str, generator: torch.Generator | None = None, *,
               negative_slope=None, groups=1) -> None:
    draw(weight, 1.0 / fan_in(weight), "normal", generator)  # seed §3: randn(n) / sqrt(n)


@INITS.register("xavier_normal")
def xavier_normal(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    draw(weight, 2.0 / (fan_in(weight) + fan_out(weight, groups)), "normal", generator)


@INITS.register("xavier_uniform")
def xavier_uniform(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    draw(weight, 2.0 / (fan_in(weight) + fan_out(weight, groups)), "uniform", generator)


@INITS.register("he_normal")
def he_normal(weight: torch.Tensor, activation: str, generator: torch.Generator | None = None, *,
              negative_slope=None, groups=1) -> None:
    draw(weight, he_variance(weight, activation, negative_slope), "normal", generator)  # seed §3: 2.0/n


@INITS.register("he_uniform")
def he_uniform(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    draw(weight, he_variance(weight, activation, negative_slope), "uniform", generator)


@INITS.register("orthogonal")
def orthogonal(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    # orthogonal_ flattens the weight to (out, n) itself
    nn.init.orthogonal_(weight, gain=orthogonal_gain(activation, negative_slope), generator=generator)


@INITS.register("lsuv")
def lsuv(weight, activation, generator=None, *, negative_slope=None, groups=1) -> None:
    """LSUV's first step only (orthogonal); the rescaling needs a batch: see `lsuv_`."""
    orthogonal(weight, activation, generator, negative_slope=negative_slope)


def scheme_for(activation: str) -> str:
    """The seed's choice of scheme for an activation: calibrated for tanh/sigmoid, else He."""
    return "calibrated" if activation in SATURATING else "he_normal"


def resolve_scheme(init: str, activation: str) -> str:
    """`model.init` as a scheme name: "auto" is the seed's choice for the activation."""
    return scheme_for(activation) if init == "auto" else init


def initialize_layer(layer: nn.Module, fill, activation: str, generator: torch.Generator | None,
                     negative_slope: float | None) -> None:
    """Weight by `fill`, bias 0; a normalization layer scale 1, shift 0; other modules untouched."""
    if isinstance(layer, WEIGHTED_LAYERS):
        fill(layer.weight, activation, generator, negative_slope=negative_slope,
             groups=getattr(layer, "groups", 1))
        if layer.bias is not None:
            layer.bias.zero_()
    elif isinstance(layer, NORM_LAYERS) and layer.weight is not None:
        layer.weight.fill_(1.0)
        if layer.bias is not None:
            layer.bias.zero_()


@torch.no_grad()
def initialize(module: nn.Module, scheme: str = "he_normal", activation: str = "relu",
               generator: torch.Generator | None = None, *, negative_slope: float | None = None) -> nn.Module:
    """Initialize every conv, linear and normalization layer inside `module`, in place.

    `scheme` is a name in `INITS`; `activation` is the non-linearity that follows the layers (He's
    variance and orthogonal's gain depend on its negative slope; `negative_slope` overrides the
    activation's default, for a leaky ReLU built with another slope). `scheme="lsuv"` does only
    LSUV's orthogonal step here; call `lsuv_(module, batch)` for the data-driven rescaling.
    Returns `module`, for chaining.
    """
    fill = INITS.get(scheme)
    for layer in module.modules():
        initialize_layer(layer, fill, activation, generator, negative_slope)
    return module


class _Measured(Exception):
    """Raised by the LSUV hook once the layer's output is seen: the rest of the forward is unneeded."""


def forward_order(model: nn.Module, batch: torch.Tensor, skip: set[nn.Module]) -> list[nn.Module]:
    """The conv and linear layers of `model` in the order `batch` first reaches them."""
    order: list[nn.Module] = []
    record = lambda layer, inputs, output: order.append(layer) if layer not in order else None
    hooks = [layer.register_forward_hook(record) for layer in model.modules()
             if isinstance(layer, WEIGHTED_LAYERS) and layer not in skip]
    try:
        model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def output_variance(model: nn.Module, batch: torch.Tensor, layer: nn.Module) -> float:
    """Variance of `layer`'s output when `batch` goes through `model` (stops the forward there)."""
    seen: list[float] = []

    def measure(module, inputs, output):
        seen.append(output.float().var().item())
        raise _Measured

    hook = layer.register_forward_hook(measure)
    try:
        model(batch)
    except _Measured:
        pass
    finally:
        hook.remove()
    if not seen:
        raise ValueError(f"lsuv_: the batch never reached {layer}; is it part of the model's forward?")
    return seen[0]


@torch.no_grad()
def lsuv_(model: nn.Module, batch: torch.Tensor, tol: float = 0.1, max_iters: int = 10,
          generator: torch.Generator | None = None, *, orthogonalize: bool = True) -> nn.Module:
    """Layer-sequential unit-variance init (Mishkin & Matas 2016), in place; returns `model`.

    Orthogonal weights first (skip with `orthogonalize=False` when `initialize(model, "lsuv")`
    did it), then for each conv/linear layer in forward order: feed `batch`, divide the weight by
    the output's std, until |variance - 1| < `tol` (the paper's Tol_var = 0.1) or `max_iters`
    tries (its T_max = 10). `model.head`, the classifier, is left as it is (it starts at
    0.001·N(0,1) in cnntricks' models). Runs in eval mode (dropout off, batch norm's running
    statistics neither used from data nor updated); the train/eval mode is restored.
    """
    head = getattr(model, "head", None)
    skip = set(head.modules()) if isinstance(head, nn.Module) else set()
    was_training = model.training
    model.eval()
    try:
        if orthogonalize:
            for layer in model.modules():
                if layer not in skip:
                    initialize_layer(layer, orthogonal, "linear", generator, None)  # gain 1: LSUV rescales
        for layer in forward_order(model, batch, skip):
            for _ in range(max_iters):
                variance = output_variance(model, batch, layer)
                if abs(variance - 1.0) < tol or variance <= 1e-12:  # done, or a dead layer: nothing to scale
                    break
                layer.weight.div_(math.sqrt(variance))
    finally:
        model.train(was_training)
    return model
