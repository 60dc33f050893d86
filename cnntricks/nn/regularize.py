"""Regularization (seed §6): L2 as ½·λ·w², L1 as λ·|w|, and max-norm constraints.

The seed writes L2 as ½·λ·w² so that its gradient is λ·w (Keras' L2 has no ½: its λ is twice
ours). Penalties apply to conv and linear weights (ndim > 1), not to biases or norm layers.
Max-norm (Srivastava et al. 2014) projects each output unit's incoming weight vector back into
the ball ‖w‖₂ <= c after every optimizer step; the seed: "typical values of c are on orders of 3 or 4".
"""
from __future__ import annotations

import torch
from torch import nn


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


def penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor | float:
    """l1·Σ|w| + ½·l2·Σw² over the weights; 0.0 when both are zero (nothing is computed)."""
    if l1 == 0 and l2 == 0:
        return 0.0
    total = 0.0
    for weight in penalized_weights(model):
        if l2:
            total = total + 0.5 * l2 * weight.square().sum()
        if l1:
            total = total + l1 * weight.abs().sum()
    return total


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale every unit whose incoming weights have ‖w‖₂ > max_norm onto the ball's surface."""
    for weight in penalized_weights(model):
        rows = weight.view(weight.shape[0], -1)  # one row per output unit (conv: per filter)
        norms = rows.norm(dim=1, keepdim=True)
        rows.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))
