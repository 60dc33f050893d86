"""Synthetic stripes and rings: small, seeded, learnable data for tests and smoke runs.

Four classes told apart by shape, not by colour or brightness: horizontal stripes, vertical
stripes, diagonal stripes (either diagonal, so a horizontal flip keeps the label) and rings
around a jittered centre. Each image draws its own frequency, phase, contrast and tint, plus
Gaussian noise, so no single pixel gives the class away but a small CNN learns it to over
90% in a few epochs. 512 training and 128 test images of 3x16x16 by default (data.image_size
and data.channels change that; data.subset shrinks the training split as for any source).
"""
from __future__ import annotations

import math

import torch

from cnntricks.config import DataConfig
from cnntricks.data.memory import check_memory
from cnntricks.data.sources import SOURCES
from cnntricks.data.store import Store

CLASSES = ["horizontal", "vertical", "diagonal", "rings"]
TRAIN_SIZE, TEST_SIZE = 512, 128
DEFAULT_IMAGE_SIZE, DEFAULT_CHANNELS = 16, 3


def make_images(labels: torch.Tensor, size: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, channels, size, size): the pattern of each label with random nuisances."""
    n = len(labels)
    coords = torch.arange(size, dtype=torch.float32) / size
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    frequency = uniform(1.5, 3.0, n, 1, 1)  # cycles per image side
    phase = uniform(0, 2 * math.pi, n, 1, 1)
    direction = torch.where(torch.rand(n, 1, 1, generator=generator) < 0.5, 1.0, -1.0)
    centre = uniform(0.3, 0.7, 2, n, 1, 1)
    radius = ((y - centre[0]) ** 2 + (x - centre[1]) ** 2).sqrt() * 2
    waves = torch.stack([y.expand(n, size, size), x.expand(n, size, size),
                         (x + direction * y).expand(n, size, size) / math.sqrt(2), radius])  # (4, N, H, W)
    pattern = torch.sin(2 * math.pi * frequency * waves[labels, torch.arange(n)] + phase)  # (N, H, W)
    contrast, brightness = uniform(0.2, 0.4, n, 1, 1, 1), uniform(0.4, 0.6, n, 1, 1, 1)
    tint = uniform(0.7, 1.0, n, channels, 1, 1)
    noise = 0.08 * torch.randn(n, channels, size, size, generator=generator)
    images = (brightness + contrast * pattern.unsqueeze(1)) * tint + noise
    return (images * 255).round_().clamp_(0, 255).to(torch.uint8)


def working_bytes(count: int, size: int, channels: int) -> int:
    """Peak bytes of make_images: float32 (4, N, S, S) waves and about four (N, S, S) and three
    (N, C, S, S) float temporaries, then the uint8 result."""
    return count * size * size * (4 * 4 + 4 * 4 + 3 * 4 * channels + channels)


@SOURCES.register("synthetic")
def load_synthetic(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train 512, test 128), balanced classes; the same seed gives the same images."""
    size, channels = cfg.image_size or DEFAULT_IMAGE_SIZE, cfg.channels or DEFAULT_CHANNELS
    check_memory(working_bytes(TRAIN_SIZE, size, channels) + TEST_SIZE * channels * size * size,
                 f"data.image_size={size}: drawing {TRAIN_SIZE + TEST_SIZE} synthetic images of "
                 f"{channels}x{size}x{size}",
                 "lower data.image_size")
    generator = torch.Generator().manual_seed(seed)
    stores = []
    for count in (TRAIN_SIZE, TEST_SIZE):
        labels = torch.arange(count) % len(CLASSES)
        labels = labels[torch.randperm(count, generator=generator)]
        stores.append(Store(make_images(labels, size, channels, generator), labels, CLASSES))
    return stores[0], stores[1]
