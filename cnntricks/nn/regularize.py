"""Regularization (seed §6): L2 as ½·λ·w², L1 as λ·|w|, elastic net, and max-norm constraints.

The seed writes L2 as ½·λ·w² so that its gradient is λ·w (Keras' L2 has no ½: its λ is twice
ours). L1 (λ·|w|) drives weights to exactly zero where L2 only shrinks them; both together are
the elastic net. Penalties apply to conv and linear weights (ndim > 1), not to biases or norm
layers, unless `penalize="all"`. Weight decay, named separately, lives with the optimizer
(train/optim.py): coupled (λ·w added to the gradient) or decoupled (w ← w − lr·λ·w).

Max-norm (Srivastava et al. 2014) projects each output unit's incoming weight vector back into
the ball ‖w‖₂ <= c after every optimizer step; the seed: "typical values of c are on orders of
3 or 4". Dropout (inverted, and spatial for convolutions) is part of the models (nn/models.py).
"""
from __future__ import annotations

import torch
from torch import nn

PENALIZE = ("weights", "all")


def penalized_weights(model: nn.Module, penalize: str = "weights") -> list[torch.Tensor]:
    """The trainable tensors a penalty acts on: conv / linear weights (ndim > 1), or all of them."""
    if penalize not in PENALIZE:
        raise ValueError(f"regularize.penalize: '{penalize}' is not one of {', '.join(PENALIZE)}")
    return [p for p in model.parameters() if p.requires_grad and (p.ndim > 1 or penalize == "all")]


def penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0,
            penalize: str = "weights") -> torch.Tensor | float:
    """l1·Σ|w| + ½·l2·Σw² over the penalized tensors; 0.0 when both are zero (nothing is computed)."""
    if l1 == 0 and l2 == 0:
        return 0.0
    total = 0.0
    for weight in penalized_weights(model, penalize):
        if l2:
            total = total + 0.5 * l2 * weight.square().sum()
        if l1:
            total = total + l1 * weight.abs().sum()
    return total


def l1_active(step: int, total_steps: int, l1_start: float) -> bool:
    """Whether L1 applies at optimizer step `step` (0-based): once `l1_start` of training is done
    (the slides' "L2 + L1 towards the end of training" is l1_start = 0.8, say)."""
    return step >= l1_start * total_steps


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale every unit whose incoming weights have ‖w‖₂ > max_norm onto the ball's surface."""
    for weight in penalized_weights(model):
        # One norm per output unit (conv: per filter), over all other dimensions; written without
        # a view, so channels_last conv weights work too.
        norms = torch.linalg.vector_norm(weight, dim=tuple(range(1, weight.ndim)), keepdim=True)
        weight.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))
