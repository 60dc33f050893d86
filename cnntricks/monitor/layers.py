"""Which modules are activations, and what one batch through an activation says (seed §3, §5).

Seed §5: "ReLU units can irreversibly die during training ... as much as 40% of your network can
be 'dead' (i.e., neurons that never activate across the entire training dataset) if the learning
rate is set too high", and "sigmoids saturate and kill gradients". Seed §3 judges an
initialization by the activations' spread along depth. So for each activation's output we keep
its mean, std and a histogram; for a rectifier, which of its units were active (input > 0) for
some input of the batch; for tanh and sigmoid, the share of outputs in saturation.

Everything here stays on the device: `layer_statistics` returns tensors, and the monitor reads
all layers back with one transfer per sampled step.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from cnntricks.nn import activations as cnntricks_activations

HIST_BINS = 30  # equal-width bins from the output's min to its max
# Mean, std, histogram and saturated share are taken over the first SAMPLE elements of each
# output (whole samples first: ~10 of 128 images of the default model's largest layer), a
# random sample of a shuffled batch. Over the whole batch they cost a training step and slowed
# the steps after it (measured).
SAMPLE = 2**16

# Saturation: seed §5, "when the neuron's activation saturates at either tail ... the gradient at
# these regions is almost zero". Beyond these thresholds the local gradient is below ~2% of its
# peak: tanh' = 1 - tanh² < 0.02 for |tanh| > 0.99; sigmoid' = s(1 - s) < 0.0099 (peak 0.25) for
# s < 0.01 or s > 0.99, i.e. 4% of the peak.
TANH_SATURATION = 0.99  # |tanh(x)| above this is saturated
SIGMOID_SATURATION = 0.01  # sigmoid(x) below this or above 1 - this is saturated

# torch's activation modules that cnntricks' factories return; every nn.Module subclass defined in
# cnntricks/nn/activations.py (PReLU, RReLU, Maxout variants...) counts too, found at run time.
TORCH_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.GELU, nn.SiLU,
                     nn.Tanh, nn.Sigmoid)


def activation_types() -> tuple[type, ...]:
    """The module types the monitor watches: torch's list above plus cnntricks' own classes."""
    own = tuple(cls for _, cls in inspect.getmembers(cnntricks_activations, inspect.isclass)
                if issubclass(cls, nn.Module) and cls.__module__ == cnntricks_activations.__name__)
    return TORCH_ACTIVATIONS + own


def activation_kind(module: nn.Module) -> str:
    """'rectifier' (the ReLU family: ReLU, Leaky, PReLU, RReLU: a unit can die), 'tanh', 'sigmoid'
    (they saturate) or 'other' (ELU, GELU, SiLU, Maxout...), read from the class name so that
    classes other files add later need no change here."""
    name = type(module).__name__.lower()
    if "relu" in name:
        return "rectifier"
    if "tanh" in name:
        return "tanh"
    if "sigmoid" in name and "log" not in name:
        return "sigmoid"
    return "other"


def find_activations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every activation module in `model`, in registration order."""
    types = activation_types()
    return [(name, module) for name, module in model.named_modules() if isinstance(module, types)]


def stored_channels_last(x: torch.Tensor) -> bool:
    """Whether `x` is (N, C, H, W) stored as (N, H, W, C), and not also plain contiguous."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def flat_view(x: torch.Tensor) -> torch.Tensor:
    """All elements of `x` as one 1-D tensor in memory order, without a copy for contiguous and
    channels_last tensors. The batch dimension is outermost in both, so a prefix is whole samples."""
    return x.permute(0, 2, 3, 1).reshape(-1) if stored_channels_last(x) else x.reshape(-1)


def unit_max(x: torch.Tensor) -> torch.Tensor:
    """(units,): the largest value of each unit over the batch, where units are dim 1 (channels
    of (N, C, H, W), features of (N, F)); a 1-D `x` is one unit."""
    if x.dim() == 1:
        return x.amax().reshape(1)
    samples, units = x.shape[:2]
    # Reduce over the batch first, in memory order: 20-30x faster than amax(dim=(0, 2, 3)) on a
    # channels_last map with 16 channels (measured, 0.03 against 0.9 ms for 128x16x14x14).
    per_sample = flat_view(x).view(samples, -1).amax(dim=0)
    if stored_channels_last(x):
        return per_sample.view(-1, units).amax(dim=0)  # (H·W, C)
    return per_sample.view(units, -1).amax(dim=1)  # (C, H·W) or (F, 1)


def fixed_nonnegative_slope(module: nn.Module) -> bool:
    """Whether the rectifier's output is > 0 exactly where its input is (ReLU, Leaky ReLU, RReLU):
    no learned slope (PReLU's may turn negative) and no negative `negative_slope`."""
    return not any(True for _ in module.parameters(recurse=False)) and getattr(module, "negative_slope", 0) >= 0


def layer_statistics(module: nn.Module, kind: str, rectifier_input: torch.Tensor, output: torch.Tensor,
                     bins: int = HIST_BINS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One activation's statistics for this batch, on the output's device:
      - a float32 vector [mean, std, min, max, saturated share (NaN unless tanh / sigmoid),
        then `bins` histogram counts from min to max];
      - for a rectifier (kind 'rectifier'), the (units,) bool mask of the units whose input was
        > 0 for some sample of the batch; else None.
    min, max and the unit mask cover the whole batch; mean, std, histogram and saturated share
    the first SAMPLE elements in memory order (whole samples first; batches are shuffled).
    """
    output = output.detach()
    # The whole batch only through reductions in its own dtype (bf16 under autocast): no
    # full-size fp32 copy. Megabyte temporaries raised glibc's mmap threshold and slowed the
    # training steps after a sampled one by up to 40% (measured).
    low, high = (bound.float() for bound in torch.aminmax(flat_view(output)))
    values = flat_view(output)[:SAMPLE].float()
    mean = values.mean()
    # Two passes (mean, then deviations): E[x²] - E[x]² cancels for a saturated sigmoid.
    std = torch.linalg.vector_norm(values - mean) / math.sqrt(max(values.numel() - 1, 1))
    # Bin index without reading min and max back to the host (one transfer per step, later);
    # clamp_min: a constant output (a dead layer) falls in bin 0; clamp: NaN must not index out.
    index = ((values - low) * (bins / (high - low).clamp_min(1e-30))).long().clamp_(0, bins - 1)
    counts = torch.zeros(bins, device=values.device)  # float32 counts exact to 2**24 > SAMPLE
    counts.scatter_add_(0, index, torch.ones(1, device=values.device).expand_as(index))
    if kind == "tanh":
        saturated = (values.abs() > TANH_SATURATION).float().mean()
    elif kind == "sigmoid":
        saturated = ((values < SIGMOID_SATURATION) | (values > 1 - SIGMOID_SATURATION)).float().mean()
    else:
        saturated = torch.full((), math.nan, device=values.device)
    active = None
    if kind == "rectifier":
        active = unit_max(output if fixed_nonnegative_slope(module) else rectifier_input.detach()) > 0
    return torch.cat([torch.stack([mean, std, low, high, saturated]), counts]), active
