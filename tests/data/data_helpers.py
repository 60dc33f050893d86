"""Files the data tests make: images with Pillow, a truncated JPEG, IDX bytes.

A module with its own name (not conftest) so `from data_helpers import ...` cannot pick up
another folder's conftest.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), color=None, fmt: str | None = None) -> Path:
    """An image of `size` (width, height) in `mode`: a gradient, or one `color`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if color is not None:
        image = Image.new(mode, size, color)
    else:
        ramp = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 7 % 256).astype(np.uint8)
        image = Image.fromarray(ramp, "L").convert(mode)
    image.save(path, format=fmt)
    return path


def save_truncated_jpeg(path: Path, size: tuple[int, int] = (32, 32)) -> Path:
    """A JPEG cut off halfway: Pillow reads its header but fails to decode it."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x00 0x00 0x08 ndim, big-endian dims, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
