"""A grid of augmented examples (seed §1, "Data Augmentation"): look before you train.

Row 0 holds the original images; each further row applies one named operation to the same
originals, with its own generator seeded `seed + row`, so a preview can be redrawn exactly.
Strengths in `default_operations` are chosen to be visible at a glance, not to train with.

Drawn like `figures.py`: a matplotlib `Figure` on the Agg canvas, never pyplot.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnntricks.augment import FancyPCA, color_jitter, flip_horizontal, random_crop, random_erasing, wei_hsv
from cnntricks.augment.warp import WarpParameters, random_warp, warp
from cnntricks.report.figures import DPI, save_png

Operation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

CELL_INCHES = 1.0  # one image per inch: 28x28 is drawn ~4x (110 dpi), nearest-neighbour
LABEL_INCHES = 2.2  # left margin for the row names
TITLE_INCHES = 0.4


@dataclass(frozen=True)
class PreviewLayout:
    rows: int  # originals + one per operation
    columns: int  # examples shown
    size_inches: tuple[float, float]  # (width, height) of the figure

    @property
    def size_pixels(self) -> tuple[int, int]:
        """(width, height) of the saved PNG."""
        return round(self.size_inches[0] * DPI), round(self.size_inches[1] * DPI)


def preview_layout(operations: int, examples: int, height: int, width: int) -> PreviewLayout:
    """The grid for `operations` rows below the originals, `examples` images of height x width."""
    cell_width = max(CELL_INCHES, width / DPI)  # never shrink a large image below one pixel per pixel
    cell_height = cell_width * height / width
    rows = operations + 1
    return PreviewLayout(rows, examples, (LABEL_INCHES + examples * cell_width, TITLE_INCHES + rows * cell_height))


def fixed_lens(images: torch.Tensor, generator: torch.Generator, k: float) -> torch.Tensor:
    """The same lens distortion k on every image (k < 0 barrel, k > 0 pincushion); no randomness."""
    zero = torch.zeros(len(images))
    params = WarpParameters(zero, zero, zero, torch.ones(len(images)), zero, zero, torch.full((len(images),), k))
    return warp(images, params)


def fancy_pca(images: torch.Tensor, generator: torch.Generator, fitted: FancyPCA | None, std: float) -> torch.Tensor:
    return (fitted if fitted is not None else FancyPCA.fit(images))(images, generator, std)


def default_operations(channels: int, images: torch.Tensor | None = None) -> dict[str, Operation]:
    """The seed §1 augmentations at strengths that show in a preview, by row name.

    Colour operations only for channels == 3. Fancy PCA is fitted on `images` if given, else on
    the batch it is applied to; its std is 1.0, ten times AlexNet's 0.1, whose offsets (~1.5
    grey levels) would be invisible.
    """
    if channels not in (1, 3):
        raise ValueError(f"default_operations: channels must be 1 (gray) or 3 (RGB), got {channels}")
    operations: dict[str, Operation] = {
        "flip (p=0.5)": flip_horizontal,
        "crop (pad 4)": lambda x, g: random_crop(x, 4, g),
        "translate (±15%)": partial(random_warp, translate=0.15),
        "rotate (±20°)": partial(random_warp, rotate=20.0),
        "scale (0.8–1.25×)": partial(random_warp, scale=(0.8, 1.25)),
        "stretch (±0.4 log x/y)": partial(random_warp, stretch=0.4),
        "shear (±20°)": partial(random_warp, shear=20.0),
        "lens barrel (k=-0.05)": partial(fixed_lens, k=-0.05),
        "lens pincushion (k=+0.05)": partial(fixed_lens, k=0.05),
        "random erasing (gray fill)": partial(random_erasing, p=1.0, value=128),
    }
    if channels == 3:
        fitted = FancyPCA.fit(images) if images is not None else None
        operations["Wei HSV (seed ranges)"] = wei_hsv
        operations["color jitter (0.4, hue 0.1)"] = color_jitter
        operations["fancy PCA (std 1.0)"] = partial(fancy_pca, fitted=fitted, std=1.0)
    return operations


def show_image(axes, image: torch.Tensor) -> None:
    """One uint8 (C, H, W) image, gray or RGB, upscaled nearest-neighbour."""
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        axes.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])


def draw_augment_preview(images: torch.Tensor, operations: dict[str, Operation], path: str | Path, *,
                         examples: int = 6, seed: int = 0, title: str = "") -> Path:
    """Save a grid PNG: the first `examples` images, then one row per operation applied to them."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"draw_augment_preview: images must be uint8 (N, 1 or 3, H, W), "
                         f"got {images.dtype} {tuple(images.shape)}")
    originals = images[:examples].cpu()  # (examples, C, H, W)
    rows = [("original", originals)]
    for row, (name, operation) in enumerate(operations.items(), start=1):
        augmented = operation(originals.clone(), torch.Generator().manual_seed(seed + row))
        if augmented.shape != originals.shape or augmented.dtype != torch.uint8:
            raise ValueError(f"draw_augment_preview: operation {name!r} returned {augmented.dtype} "
                             f"{tuple(augmented.shape)}; expected uint8 {tuple(originals.shape)} like its input")
        rows.append((name, augmented.cpu()))
    _, _, height, width = originals.shape
    layout = preview_layout(len(operations), len(originals), height, width)
    figure = Figure(figsize=layout.size_inches, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(layout.rows, layout.columns, squeeze=False)
    for (name, batch), axes_row in zip(rows, grid):
        for image, axes in zip(batch, axes_row):
            show_image(axes, image)
        axes_row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, path)
