"""Bringing uint8 image tensors to one pixel format: channel count, alpha, size.

- gray -> RGB repeats the channel; RGB -> gray is ITU-R 601 luma, Y = 0.299 R + 0.587 G + 0.114 B,
  in Pillow's fixed-point form, so a tensor converted here equals `Image.convert("L")`.
- RGBA is composited on white (a transparent background reads as paper, the usual look of
  icons and scans), the same rule the image decoder uses.
- Resizing covers the target and crops the centre, so shapes keep their aspect ratio; the
  filter is bilinear with antialiasing, like Pillow's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} -> (N, channels, H, W); None keeps C."""
    have = images.shape[1]
    if channels is None or channels == have:
        return images
    if (have, channels) == (1, 3):
        return images.expand(-1, 3, -1, -1).contiguous()
    if (have, channels) == (3, 1):
        r, g, b = images.int().unbind(1)
        luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # Pillow's ITU-R 601-2 luma
        return luma.to(torch.uint8).unsqueeze(1).contiguous()
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels; data.channels must be 1 or 3")


def composite_on_white(rgba: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 4, H, W) RGBA -> (N, 3, H, W) RGB over an opaque white background."""
    rgb, alpha = rgba[:, :3].int(), rgba[:, 3:].int()
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).to(torch.uint8).contiguous()


# Float working copies of a resize are made this many images at a time, at most this many bytes
# (both copies together): whole-set float copies would be 8x the uint8 store, and 4096 images of
# 3x1024x1024 alone are 100 GB.
RESIZE_CHUNK, RESIZE_CHUNK_BYTES = 4096, 1 << 30


def _resize_chunk(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """(images per chunk, float bytes of one chunk) for resizing uint8 `shape` (N, C, H, W) to `size`."""
    channels, height, width = shape[1:]
    per_image = 4 * channels * (height * width + size[0] * size[1])  # the float input and the float output
    count = max(1, min(RESIZE_CHUNK, RESIZE_CHUNK_BYTES // per_image, shape[0]))
    return count, count * per_image


def resize_bytes(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """(bytes of the uint8 result, bytes of its float working copies) of `resize_images` on `shape`."""
    if tuple(shape[2:]) == tuple(size):
        return 0, 0
    return shape[0] * shape[1] * size[0] * size[1], _resize_chunk(shape, size)[1]


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, size[0], size[1]): centre crop to the target's aspect, then resize."""
    height, width = images.shape[-2:]
    target_h, target_w = size
    if (height, width) == (target_h, target_w):
        return images
    chunk = _resize_chunk(tuple(images.shape), size)[0]
    # Crop the largest centred window with the target's aspect ratio (nothing is stretched).
    crop_h, crop_w = height, width
    if height * target_w > width * target_h:
        crop_h = max(1, round(width * target_h / target_w))
    else:
        crop_w = max(1, round(height * target_w / target_h))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    images = images[..., top:top + crop_h, left:left + crop_w]
    out = torch.empty(len(images), images.shape[1], target_h, target_w, dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(target_h, target_w), mode="bilinear", align_corners=False,
                             antialias=True)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out
