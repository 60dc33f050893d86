"""Erasing and mixing augmentations (beyond the seed): random erasing, cutout, mixup, cutmix.

References: Zhong et al. 2017, "Random Erasing Data Augmentation"; DeVries & Taylor 2017,
"Improved Regularization of CNNs with Cutout"; Zhang et al. 2018, "mixup: Beyond Empirical
Risk Minimization"; Yun et al. 2019, "CutMix". Batched like `geometric.py`: (N, C, H, W),
per-image parameters from an explicit `torch.Generator`, one mask for the whole batch.

Each image draws its own lambda (the papers draw one per batch; per-image draws have the same
expected loss and more variety). Beta samples come from two Gamma draws by Marsaglia & Tsang's
method driven by the generator, because `torch._standard_gamma` and `torch.distributions`
take no generator and so could not be repeated from a seed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_gamma(shape: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float64 Gamma(shape, 1) samples (Marsaglia & Tsang 2000, boosted for shape < 1)."""
    if shape <= 0:
        raise ValueError(f"sample_gamma: shape must be > 0, got {shape}")
    device = generator.device
    boosted = shape if shape >= 1 else shape + 1  # Gamma(a) = Gamma(a + 1) * U^(1/a)
    d = boosted - 1 / 3
    c = 1 / math.sqrt(9 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    pending = torch.arange(n, device=device)
    while len(pending):  # acceptance is > 95%, so a few rounds
        x = torch.randn(len(pending), generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(len(pending), generator=generator, device=device, dtype=torch.float64)
        v = (1 + c * x) ** 3
        accept = (v > 0) & (u.log() < 0.5 * x**2 + d - d * v + d * v.clamp_min(1e-300).log())
        out[pending[accept]] = (d * v)[accept]
        pending = pending[~accept]
    if shape < 1:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        out = out * u ** (1 / shape)
    return out


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float64 Beta(alpha, beta) samples as X / (X + Y) with X, Y Gamma-distributed."""
    x, y = sample_gamma(alpha, n, generator), sample_gamma(beta, n, generator)
    total = x + y
    # Tiny alpha can underflow both Gammas to 0; then the sample is 0 or 1 with equal odds.
    coin = (torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) < 0.5)
    return torch.where(total > 0, x / total.clamp_min(1e-300), coin.double())


def _rectangle_mask(top, left, height, width, size_h: int, size_w: int, device) -> torch.Tensor:
    """(N, 1, H, W) bool mask of rows [top, top+height) and columns [left, left+width)."""
    rows = torch.arange(size_h, device=device).view(1, -1, 1)
    cols = torch.arange(size_w, device=device).view(1, 1, -1)
    top, left = top.to(device).view(-1, 1, 1), left.to(device).view(-1, 1, 1)
    height, width = height.to(device).view(-1, 1, 1), width.to(device).view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return inside.unsqueeze(1)


def random_erasing(images: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                   area: tuple[float, float] = (0.02, 0.33),  # Zhong et al.: s_l, s_h
                   ratio: tuple[float, float] = (0.3, 3.3),  # Zhong et al.: r_1, 1/r_1
                   value: float = 0, attempts: int = 10) -> torch.Tensor:
    """With probability p, fill one random rectangle per image with `value`.

    The rectangle covers a uniform fraction of the image in `area` with a log-uniform
    height/width `ratio`. Like the paper's retry loop, `attempts` candidates are drawn per
    image and the first that fits is used; if none fits, the last is clipped to the image.
    """
    n, _, height, width = images.shape
    device = generator.device
    fraction = area[0] + torch.rand(n, attempts, generator=generator, device=device) * (area[1] - area[0])
    log_ratio = torch.rand(n, attempts, generator=generator, device=device)
    log_ratio = math.log(ratio[0]) + log_ratio * math.log(ratio[1] / ratio[0])
    pixels = fraction * height * width
    box_h = (pixels * log_ratio.exp()).sqrt().round().long()
    box_w = (pixels / log_ratio.exp()).sqrt().round().long()
    fits = (box_h >= 1) & (box_h <= height) & (box_w >= 1) & (box_w <= width)
    first = torch.where(fits.any(1), fits.long().argmax(1), torch.full((n,), attempts - 1, device=device))
    pick = torch.arange(n, device=device)
    box_h, box_w = box_h[pick, first].clamp(1, height), box_w[pick, first].clamp(1, width)
    top = (torch.rand(n, generator=generator, device=device) * (height - box_h + 1)).long()
    left = (torch.rand(n, generator=generator, device=device) * (width - box_w + 1)).long()
    erase = torch.rand(n, generator=generator, device=device) < p
    mask = _rectangle_mask(top, left, box_h, box_w, height, width, images.device)
    mask = mask & erase.to(images.device).view(-1, 1, 1, 1)
    return torch.where(mask, torch.as_tensor(value, dtype=images.dtype, device=images.device), images)


def cutout(images: torch.Tensor, generator: torch.Generator, size: int = 8, p: float = 1.0,
           value: float = 0) -> torch.Tensor:
    """Zero a size x size square centred anywhere in the image (clipped at the border).

    DeVries & Taylor let the square hang over the edge, so smaller areas near borders occur.
    """
    n, _, height, width = images.shape
    device = generator.device
    centre_y = torch.randint(0, height, (n,), generator=generator, device=device)
    centre_x = torch.randint(0, width, (n,), generator=generator, device=device)
    erase = torch.rand(n, generator=generator, device=device) < p
    side = torch.full((n,), size, device=device)
    top, left = centre_y - size // 2, centre_x - size // 2
    mask = _rectangle_mask(top, left, side, side, height, width, images.device)
    mask = mask & erase.to(images.device).view(-1, 1, 1, 1)
    return torch.where(mask, torch.as_tensor(value, dtype=images.dtype, device=images.device), images)


def _partners(labels, num_classes, generator, device):
    """A random partner per image and both one-hot targets, (N,) and 2 x (N, num_classes)."""
    partner = torch.randperm(len(labels), generator=generator, device=generator.device).to(device)
    one_hot = F.one_hot(labels.to(device).long(), num_classes).float()
    return partner, one_hot, one_hot[partner]


def mixup(images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator,
          alpha: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:  # Zhang et al.: alpha in [0.1, 0.4]
    """Blend each float image with a random partner: x = lam x_i + (1 - lam) x_j, lam ~ Beta(alpha, alpha).

    Returns (mixed images (N, C, H, W), soft targets (N, num_classes)).
    """
    if not images.is_floating_point():
        raise TypeError(f"mixup: images must be float (got {images.dtype}); convert before mixing")
    lam = sample_beta(alpha, alpha, len(images), generator).to(images.device)
    partner, own, other = _partners(labels, num_classes, generator, images.device)
    weight = lam.to(images.dtype).view(-1, 1, 1, 1)
    mixed = weight * images + (1 - weight) * images[partner]
    lam = lam.float().view(-1, 1)
    return mixed, lam * own + (1 - lam) * other


def cutmix(images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator,
           alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:  # Yun et al.: alpha = 1
    """Paste a box from a random partner into each image; targets weigh by the pasted area.

    The box has sides H sqrt(1 - lam), W sqrt(1 - lam), lam ~ Beta(alpha, alpha), centred
    uniformly and clipped at the border; lam is then recomputed from the exact pasted pixels.
    Works on uint8 or float images.
    """
    n, _, height, width = images.shape
    device = generator.device
    lam = sample_beta(alpha, alpha, n, generator)
    side = (1 - lam).sqrt()
    box_h, box_w = (side * height).round().long(), (side * width).round().long()
    centre_y = torch.randint(0, height, (n,), generator=generator, device=device)
    centre_x = torch.randint(0, width, (n,), generator=generator, device=device)
    top, left = centre_y - box_h // 2, centre_x - box_w // 2
    mask = _rectangle_mask(top, left, box_h, box_w, height, width, images.device)  # (N, 1, H, W)
    partner, own, other = _partners(labels, num_classes, generator, images.device)
    mixed = torch.where(mask, images[partner], images)
    pasted = mask.flatten(1).float().mean(1, keepdim=True)  # exact fraction from the partner
    return mixed, (1 - pasted) * own + pasted * other


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k target_k log softmax(logits)_k (the loss for mixed targets)."""
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()
