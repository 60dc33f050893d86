"""Decoding one image file with Pillow to uint8 (C, H, W) in a fixed pixel format.

Shared by the image-folder source and `load_images` (`cnntricks predict`), so an image is
brought to the training format by exactly the code that made the training data:
- EXIF orientation is applied (phone photos are often stored sideways);
- transparency (RGBA, LA, palette with a transparent index) is composited on white;
- 16-bit gray (PNG "I;16") keeps its top 8 bits; every other mode goes through Pillow's
  convert to "L" (ITU-R 601 luma) or "RGB";
- resizing covers the target and crops the centre (no stretching), bilinear with Pillow's
  antialiasing; JPEGs are decoded at a reduced scale first when much larger (Image.draft).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow's exceptions for files it cannot decode: unidentified (OSError), truncated (OSError),
# broken chunks (SyntaxError, ValueError, EOFError, struct.error), oversized (DecompressionBombError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def _cover_box(width: int, height: int, target_w: int, target_h: int) -> tuple[float, float, float, float]:
    """The largest centred box of the source with the target's aspect ratio."""
    if width * target_h > height * target_w:  # source is wider: trim the sides
        crop = height * target_w / target_h
        return ((width - crop) / 2, 0.0, (width + crop) / 2, float(height))
    crop = width * target_h / target_w
    return (0.0, (height - crop) / 2, float(width), (height + crop) / 2)


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def decode_image(path: str | Path, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (channels, H, W) of the image at `path`; `size` = (H, W) resizes, None keeps it.

    Raises one of DECODE_ERRORS when the file is missing, unreadable or not an image Pillow can decode.
    """
    with Image.open(path) as image:
        if size is not None and image.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when that still covers the target: much faster.
            box = _cover_box(*image.size, size[1], size[0])
            scale = min((box[2] - box[0]) / size[1], (box[3] - box[1]) / size[0])
            if scale >= 2:
                image.draft(image.mode, (int(image.size[0] / scale) + 1, int(image.size[1] / scale) + 1))
        image.load()  # decode now, inside the `with`; a truncated file raises here
        image = ImageOps.exif_transpose(image)
        image = _to_mode(image, channels)
        if size is not None and image.size != (size[1], size[0]):
            box = _cover_box(*image.size, size[1], size[0])
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SMALLER, LARGER = 0.5, 8.0  # an image side under half, or over 8x, the training images' is far from them


def far_from_training(paths: list[str | Path], channels: int, size: tuple[int, int]) -> list[str]:
    """Lines saying how the images at `paths` differ much from the training images (`channels`, `size` =
    (H, W)): far smaller or larger, or gray for a colour model and colour for a gray one. Reads each
    file's header only; files that cannot be opened are left to the decoder to report."""
    small, large, gray, colour = [], [], [], []
    height, width = size
    for path in paths:
        try:
            with Image.open(path) as image:
                w, h, mode = *image.size, image.mode
        except DECODE_ERRORS:
            continue
        described = f"{Path(path).name} {w}x{h}"
        if min(w / width, h / height) < SMALLER:
            small.append(described)
        elif max(w / width, h / height) > LARGER:
            large.append(described)
        if channels == 3 and mode in GRAY_MODES:
            gray.append(f"{Path(path).name} ({mode})")
        elif channels == 1 and mode not in GRAY_MODES:
            colour.append(f"{Path(path).name} ({mode})")
    trained = f"the training images ({width}x{height}, {'colour' if channels == 3 else 'gray'})"

    def line(items: list[str], what: str) -> str:
        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
        return f"{len(items)} of {len(paths)} images are {what} {trained}: {', '.join(items[:3])}{more}"
    lines = []
    if small:
        lines.append(line(small, f"under half the size of") + "; enlarged, they are blurred")
    if large:
        lines.append(line(large, f"over {LARGER:g}x the size of") + "; shrunk, small details are lost")
    if gray:
        lines.append(line(gray, "gray, unlike") + "; each gray value becomes a colour")
    if colour:
        lines.append(line(colour, "in colour, unlike") + "; they are converted to gray")
    return lines
