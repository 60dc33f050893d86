"""Pre-processing (seed §2): zero-centering and std normalization, per channel.

Also the seed's other form, min-max: "normalizes each dimension so that the min and max along
the dimension is -1 and 1 respectively" (mode "minmax", per channel).

Statistics are fitted on the training split only and saved in the run directory, so
evaluation and prediction transform images exactly as training did.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalization:
    mean: list[float]  # per channel, in [0, 1] pixel units; (min + max) / 2 for "minmax"
    std: list[float]   # per channel; all ones when only centering; (max - min) / 2 for "minmax"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float (N, C, H, W) in [0, 255] -> float32, centered (and scaled)."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        # One fused multiply-add on the batch: (x/255 - mean)/std = x·a + b.
        scale = 1 / (255 * std)
        return torch.addcmul(-mean / std, images.float(), scale)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


def fit_normalization(images: torch.Tensor, mode: str) -> Normalization:
    """Per-channel statistics of uint8 (N, C, H, W) training images for `mode`."""
    if mode not in ("none", "center", "standardize", "minmax"):
        raise ValueError(f"preprocess.normalize: unknown mode '{mode}'; choose none, center, standardize or minmax")
    channels = images.shape[1]
    if mode == "none":
        return Normalization([0.0] * channels, [1 / 255] * channels)  # raw 0-255 values
    if mode == "minmax":
        return _fit_minmax(images)
    totals = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), 4096):  # chunks: never a float copy of the whole set
        chunk = images[start:start + 4096].double() / 255
        totals += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = totals / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    if mode == "center":
        std = torch.ones(channels, dtype=torch.float64)
    return Normalization(mean.tolist(), std.tolist())


def _fit_minmax(images: torch.Tensor) -> Normalization:
    """Seed §2: per channel, the training min maps to -1 and the max to +1.

    (x - mid) / half_range with mid = (min + max) / 2 and half_range = (max - min) / 2, so the
    same Normalization (mean, std) form applies it. A constant channel maps to 0.
    """
    lowest = images.amin(dim=(0, 2, 3)).double() / 255   # (C,), exact on uint8: no float copy
    highest = images.amax(dim=(0, 2, 3)).double() / 255
    half_range = (highest - lowest) / 2
    half_range = torch.where(half_range > 0, half_range, torch.ones_like(half_range))
    return Normalization(((lowest + highest) / 2).tolist(), half_range.tolist())
