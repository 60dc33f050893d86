"""Batched geometric augmentation (seed §1): horizontal flip and random crops.

Each function takes a whole batch (N, C, H, W), uint8 or float, on any device, draws one set of
random parameters per image from an explicit `torch.Generator`, and returns a new batch: one
kernel per batch instead of one Python call per image (airbench's `batch_flip_lr`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_flip(n: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """(n,) bool: which images to mirror (one draw per image)."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def flip_horizontal(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p.

    Before a warp, pass `draw_flip`'s mask to `warp(..., flip=)` instead: the mirror is then
    folded into the warp's sampling grid at no cost (the `policy` does this).
    """
    flip = draw_flip(len(images), generator, p).to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` pixels, then cut a crop of the original size at a random offset.

    Equivalent to a random translation of up to `padding` pixels with zero fill, gathered in
    one indexing operation for the whole batch.
    """
    if padding == 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)  # (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device)
    dy, dx = dy.to(images.device), dx.to(images.device)
    rows = (dy.view(n, 1) + torch.arange(height, device=images.device)).view(n, 1, height, 1)
    cols = (dx.view(n, 1) + torch.arange(width, device=images.device)).view(n, 1, 1, width)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]
