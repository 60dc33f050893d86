"""Pre-processing (seed §2): zero-centering and std normalization, per channel.

Also the seed's other form, min-max: "normalizes each dimension so that the min and max along
the dimension is -1 and 1 respectively" (mode "minmax", per channel).

Statistics are fitted on the training split only and saved in the run directory, so
evaluation and prediction transform images exactly as training did.

Registry: `NORMALIZATIONS` (preprocess.normalize) - none, center, standardize, minmax: `(images) -> Normalization`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from cnntricks.registry import Registry

NORMALIZATIONS = Registry("normalization")


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
    """Per-channel statistics of uint8 (N, C, H, W) training images for `mode` (a NORMALIZATIONS name)."""
    return NORMALIZATIONS.get(mode)(images)


@NORMALIZATIONS.register("none")
def fit_none(images: torch.Tensor) -> Normalization:
    """Raw 0-255 values, as floats."""
    channels = images.shape[1]
    return Normalization([0.0] * channels, [1 / 255] * channels)


@NORMALIZATIONS.register("center")
def fit_center(images: torch.Tensor) -> Normalization:
    """Seed §2: subtract the per-channel mean; [0, 1] units."""
    mean, _ = channel_moments(images)
    return Normalization(mean.tolist(), torch.ones(images.shape[1], dtype=torch.float64).tolist())


@NORMALIZATIONS.register("standardize")
def fit_standardize(images: torch.Tensor) -> Normalization:
    """Seed §2: subtract the per-channel mean, divide by the per-channel std."""
    mean, std = channel_moments(images)
    return Normalization(mean.tolist(), std.tolist())


def channel_moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel of uint8 (N, C, H, W) images in [0, 1] units, float64 (C,)."""
    channels = images.shape[1]
    totals = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), 4096):  # chunks: never a float copy of the whole set
        chunk = images[start:start + 4096].double() / 255
        totals += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = totals / count
    return mean, (squares / count - mean.square()).clamp_min(1e-12).sqrt()


@NORMALIZATIONS.register("minmax")
def fit_minmax(images: torch.Tensor) -> Normalization:
    """Seed §2: per channel, the training min maps to -1 and the max to +1.

    (x - mid) / half_range with mid = (min + max) / 2 and half_range = (max - min) / 2, so the
    same Normalization (mean, std) form applies it. A constant channel maps to 0.
    """
    lowest = images.amin(dim=(0, 2, 3)).double() / 255   # (C,), exact on uint8: no float copy
    highest = images.amax(dim=(0, 2, 3)).double() / 255
    half_range = (highest - lowest) / 2
    half_range = torch.where(half_range > 0, half_range, torch.ones_like(half_range))
    return Normalization(((lowest + highest) / 2).tolist(), half_range.tolist())

