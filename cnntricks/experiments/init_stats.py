"""Activation statistics layer by layer under each initialization (seed §3; the figure of Stanford
CS231n's "Training Neural Networks I" lecture).

A 10-layer plain fully connected net (no normalization) takes a batch of unit Gaussian inputs
(or standardized images) and we look at each layer's output, for tanh and ReLU under the seed's
three schemes:

- small_normal, 0.001·N(0,1): each layer multiplies the std by about 0.001·√width, so the
  activations collapse to 0 within a few layers, and so do the gradients of the weights;
- calibrated, N(0, 1/n): right for tanh (linear near 0), which keeps its spread; ReLU discards
  half the signal, so each layer halves the second moment (the std falls by about √2 a layer);
- he_normal, N(0, 2/n): ReLU keeps its spread through depth; tanh saturates a little.

One PNG, a row per (activation, scheme) and a column per layer, each panel a histogram titled
with the layer's mean and std, plus the per-layer numbers as JSON and as a markdown table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnntricks.experiments import EXPERIMENTS, check_budget
from cnntricks.experiments.common import data_overrides
from cnntricks.nn.init import initialize

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
SCHEMES = ("small_normal", "calibrated", "he_normal")  # seed §3's three, in its order
HISTOGRAM_VALUES = 20_000  # values per panel: enough for a smooth histogram, small to draw


@dataclass(frozen=True)
class Budget:
    width: int  # units per hidden layer
    batch: int  # inputs fed through
    depth: int = 10  # layers, as the lecture's figure


BUDGETS = {"smoke": Budget(width=64, batch=256),
           "small": Budget(width=500, batch=1000),  # CS231n's sizes
           "full": Budget(width=1000, batch=4000)}


def standardized_images(source: str, count: int, seed: int) -> torch.Tensor:
    """`count` training images of data source `source`, flattened to (N, C·H·W), zero-centred and
    divided by their std per pixel (seed §2), so the first layer sees unit-variance inputs."""
    from cnntricks import config
    from cnntricks.data import load_splits
    cfg = config.load(None, data_overrides(source))
    images = load_splits(cfg.data, seed).train.images
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    x = images[chosen].flatten(1).float()
    x = x - x.mean(0)
    return x / x.std(0).clamp_min(1e-6)  # constant pixels (a border) stay 0 instead of dividing by 0


@torch.no_grad()
def layer_outputs(x: torch.Tensor, activation: str, scheme: str, width: int, depth: int,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """The activations after each of `depth` Linear(width) + activation layers, for input x (N, D)."""
    outputs, h = [], x
    for _ in range(depth):
        layer = initialize(nn.Linear(h.shape[1], width), scheme, activation, generator)
        h = ACTIVATIONS[activation](layer(h))
        outputs.append(h)
    return outputs


def sample(values: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    flat = values.flatten()
    if len(flat) > HISTOGRAM_VALUES:
        flat = flat[torch.randperm(len(flat), generator=generator)[:HISTOGRAM_VALUES]]
    return flat.numpy()


def measure(*, seed: int, seeds: int, budget: Budget, data: str | None) -> tuple[dict, dict]:
    """({"tanh/small_normal": [{"layer", "mean", "std"} per layer], ...} averaged over the seeds,
    {same keys: [values sampled per layer]} of the first seed, for the histograms)."""
    per_seed: dict[str, list[list[tuple[float, float]]]] = {}
    samples: dict[str, list[np.ndarray]] = {}
    for s in range(seed, seed + seeds):
        x = (standardized_images(data, budget.batch, s) if data
             else torch.randn(budget.batch, budget.width, generator=torch.Generator().manual_seed(s)))
        for activation in ACTIVATIONS:
            for scheme in SCHEMES:
                key = f"{activation}/{scheme}"
                # one weight seed for all rows: the schemes differ only in scale, a controlled comparison
                outputs = layer_outputs(x, activation, scheme, budget.width, budget.depth,
                                        torch.Generator().manual_seed(10_000 + s))
                per_seed.setdefault(key, []).append([(h.mean().item(), h.std().item()) for h in outputs])
                if s == seed:
                    samples[key] = [sample(h, torch.Generator().manual_seed(s)) for h in outputs]
    stats = {key: [{"layer": layer + 1,
                    "mean": float(np.mean([run[layer][0] for run in runs])),
                    "std": float(np.mean([run[layer][1] for run in runs]))}
                   for layer in range(budget.depth)]
             for key, runs in per_seed.items()}
    return stats, samples


def markdown_table(stats: dict) -> str:
    depth = len(next(iter(stats.values())))
    lines = ["| activation / scheme | " + " | ".join(f"layer {k}" for k in range(1, depth + 1)) + " |",
             "|---|" + "---:|" * depth]
    lines += [f"| {key} | " + " | ".join(f"{row['std']:.3g}" for row in rows) + " |" for key, rows in stats.items()]
    return "\n".join(lines) + "\n"


def draw_histograms(samples: dict, stats: dict, path: Path, title: str) -> Path:
    """A grid of histograms: a row per (activation, scheme), a column per layer. The x range is
    shared by the rows of an activation, so a collapse shows as a spike at 0, not as a zoom."""
    # matplotlib is imported here, on the Agg canvas as in report/figures.py, so that listing the
    # experiments (`cnntricks experiment --help`) does not pay for it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cnntricks.report.figures import DPI, save_png

    keys = list(samples)
    depth = len(samples[keys[0]])
    width, height = 1.55 * depth + 0.6, 1.45 * len(keys) + 0.8
    figure = Figure(figsize=(width, height), dpi=DPI)  # fixed margins: constrained layout of 60 panels takes seconds
    FigureCanvasAgg(figure)
    figure.suptitle(f"{title}\nhistogram of each layer's outputs; the ReLU panels cut off their spike of zeros",
                    fontsize=11, y=1 - 0.1 / height)
    grid = figure.subplots(len(keys), depth, squeeze=False)
    figure.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=0.3 / height, top=1 - 0.95 / height,
                           wspace=0.12, hspace=0.75)
    for activation in ACTIVATIONS:
        rows = [key for key in keys if key.startswith(activation + "/")]
        if activation == "tanh":
            low, high = -1.0, 1.0
        else:  # ReLU: up to where the widest row's tail thins out
            high = max(float(np.quantile(np.concatenate(samples[key]), 0.995)) for key in rows)
            low, high = 0.0, float(np.ceil(high)) if high >= 1 else max(float(f"{high:.1g}"), 1e-6)
        bins = np.linspace(low, high, 41)
        ticks = [-1, 0, 1] if activation == "tanh" else [0, high]
        for key in rows:
            row = keys.index(key)
            for layer, values in enumerate(samples[key]):
                axes = grid[row, layer]
                counts, _ = np.histogram(values, bins=bins)  # values past the range are left out
                axes.stairs(counts, bins, fill=True, color="tab:blue")  # one artist, not 40 bars: 60 panels draw fast
                if activation == "relu" and counts[1:].max() > 0:  # the spike of zeros would flatten the rest
                    axes.set_ylim(0, 1.3 * counts[1:].max())
                axes.set_yticks([])
                axes.set_xticks(ticks)
                axes.tick_params(labelsize=6, pad=1)
                measured = stats[key][layer]
                axes.set_title(f"layer {layer + 1}\nmean {measured['mean']:.2g}  std {measured['std']:.2g}",
                               fontsize=6.5)
                if layer == 0:
                    axes.set_ylabel(key.replace("/", "\n"), fontsize=8)
    return save_png(figure, path)


@EXPERIMENTS.register("init-stats")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Layer-by-layer activation histograms of a 10-layer net under small, calibrated and He init (seed §3)."""
    size = BUDGETS[check_budget(budget)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats, samples = measure(seed=seed, seeds=seeds, budget=size, data=data)
    inputs = f"{data} images, standardized" if data else "unit Gaussian inputs"
    title = (f"Activations per layer: {size.depth} layers of {size.width} units, no normalization, "
             f"{size.batch} {inputs}")
    figure = draw_histograms(samples, stats, out_dir / "init_stats.png", title)
    numbers = out_dir / "results.json"  # the names every study writes (README: "The seed's claims, measured")
    numbers.write_text(json.dumps({"seed": seed, "seeds": seeds, "budget": budget, "data": data,
                                   "width": size.width, "batch": size.batch, "depth": size.depth,
                                   "stats": stats}, indent=1))
    table = out_dir / "results.md"
    table.write_text(f"Std of each layer's activations ({title}; mean over {seeds} seed(s)).\n\n"
                     + markdown_table(stats))
    rows = [[*key.split("/"), f"{rows[0]['std']:.3g}", f"{rows[-1]['std']:.3g}"] for key, rows in stats.items()]
    return {"files": {"figure": figure, "numbers": numbers, "table": table}, "stats": stats,
            "summary": {"header": ["activation", "scheme", "std layer 1", f"std layer {size.depth}"],
                        "rows": rows}}
