"""Augmentation policies: named mixes of the batched operations, applied per training batch."""
from __future__ import annotations

from typing import Callable

import torch

from cnntricks.augment.geometric import flip_horizontal, random_crop
from cnntricks.config import AugmentConfig

Policy = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def create_policy(cfg: AugmentConfig) -> Policy:
    """A function (images, generator) -> augmented images for `cfg.policy`."""
    if cfg.policy == "none":
        return lambda images, generator: images
    if cfg.policy == "flip":
        return flip_horizontal

    def standard(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop(flip_horizontal(images, generator), cfg.crop_padding, generator)
    return standard
