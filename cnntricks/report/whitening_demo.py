"""The PCA/whitening figure of seed §2 (after Stanford CS231n's "Data Preprocessing" notes).

Four panels: (a) some original images; (b) the top-k eigenvectors of the pixel covariance shown
as images ("eigen-images"); (c) the same images rebuilt from only those k components, which
keep most of the variance; (d) the images whitened (all components, divided by sqrt(S + eps))
and mapped back to image space, i.e. ZCA, which leaves mostly edges.

Drawn like `figures.py`: a matplotlib `Figure` on the Agg canvas, never pyplot.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnntricks.preprocess.whiten import fit_whitening
from cnntricks.report.figures import DPI, save_png

PANEL_INCHES = 3.5


def rescale_each(images: torch.Tensor) -> torch.Tensor:
    """Min-max each image of (N, C, H, W) into [0, 1] for display (a constant image becomes 0.5)."""
    flat = images.reshape(len(images), -1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.full_like(flat, 0.5))
    return scaled.reshape(images.shape)


def mosaic(images: torch.Tensor, gap: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows·H, columns·W[, 3]) array, near-square, white gaps."""
    n, channels, height, width = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.ones(channels, rows * (height + gap) - gap, columns * (width + gap) - gap)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        canvas[:, top:top + height, left:left + width] = image
    return canvas[0].numpy() if channels == 1 else canvas.permute(1, 2, 0).numpy()


def draw_whitening_demo(images: torch.Tensor, path: str | Path, *, components: int = 144, examples: int = 8,
                        eps: float = 1e-5) -> Path:
    """Save the four-panel figure for uint8 (N, 1 or 3, H, W) images; statistics are fitted on all N."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"draw_whitening_demo: images must be uint8 (N, 1 or 3, H, W), "
                         f"got {images.dtype} {tuple(images.shape)}")
    dims = images[0].numel()
    if not 1 <= components <= dims:
        raise ValueError(f"draw_whitening_demo: components={components} must be between 1 and "
                         f"D = C*H*W = {dims} for images of shape {tuple(images.shape[1:])}; "
                         f"pass fewer components")
    images = images.cpu()
    # One fit serves all panels: the eigenvectors do not depend on the method, only __call__ does.
    whitening = fit_whitening(images, method="zca", eps=eps)
    shown = images[:examples]
    panels = [
        ("original", shown.float() / 255),
        (f"top {components} eigenvectors", rescale_each(whitening.eigenvectors_as_images(components))),
        (f"reduced to {components} dimensions", whitening.reduce(shown, components).clamp(0, 1)),
        ("whitened", rescale_each(whitening(shown))),
    ]
    figure = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (label, batch) in zip(figure.subplots(1, len(panels)), panels):
        axes.imshow(mosaic(batch), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes.set_title(label)
        axes.set_axis_off()
    figure.suptitle(f"PCA and whitening, fitted on {len(images)} images of shape {tuple(images.shape[1:])}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, path)
