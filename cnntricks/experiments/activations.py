"""Activations compared on one network (seed §5; the slides' table from Xu et al. 2015, "Empirical
Evaluation of Rectified Activations in Convolutional Network").

Xu et al. trained a Network-in-Network on CIFAR-10 without augmentation and with no
pre-processing beyond centering, and report test error: ReLU 12.45, Leaky ReLU a=100 12.66,
Leaky ReLU a=5.5 11.20, PReLU 11.79, RReLU 11.19 %. The zoo has no Network-in-Network, so the
closest model stands in: `vgg` (3x3 convs, global average pooling at the end, as NiN ends), with
`augment.policy=none preprocess.normalize=center`, scaled to the budget. Unlike NiN it has batch
normalization, which lets sigmoid and tanh train at all; results.md says so.
"""
from __future__ import annotations

from pathlib import Path

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, draw_error_bars, draw_loss_curves, error_rows, prepare,
                                          run_grid, stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=4),
           # 24 runs, maxout ~3x and rrelu ~2x the cost of relu: 10,000 images x 5 epochs at width 8 is what
           # fits the small budget's minutes (the study took 10 min on a busy 2-core machine)
           "small": Budget("fashion-mnist", subset=10000, epochs=5, width=8),
           "full": Budget("fashion-mnist", subset=None, epochs=30, width=32, threads=None)}

# Xu et al. 2015, Table 3 (CIFAR-10, NiN, test error %); the seed writes Leaky ReLU's a = 1/slope.
PAPER = {"relu": 12.45, "leaky a=100": 12.66, "leaky a=5.5": 11.20, "prelu": 11.79, "rrelu": 11.19}
GRID = [("relu", ["model.activation=relu"]),
        ("leaky a=100", ["model.activation=leaky_relu", "model.negative_slope=0.01"]),
        ("leaky a=5.5", ["model.activation=leaky_relu", f"model.negative_slope={1 / 5.5:.6f}"]),
        ("prelu", ["model.activation=prelu"]),
        ("rrelu", ["model.activation=rrelu"]),
        ("sigmoid", ["model.activation=sigmoid"]),
        ("tanh", ["model.activation=tanh"]),
        ("maxout", ["model.activation=maxout"])]
COMMON = ["model.name=vgg", "augment.policy=none", "preprocess.normalize=center"]


def file_label(label: str) -> str:
    return label.replace(" a=", "-a").replace(" ", "-")


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each config; the same at every budget (the budget adds its own)."""
    return [(file_label(label), COMMON + overrides) for label, overrides in GRID]


@EXPERIMENTS.register("activations")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """ReLU, Leaky ReLU (a=100, a=5.5), PReLU, RReLU, sigmoid, tanh, maxout beside Xu et al. 2015 (seed §5)."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("activations", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    rows, bars = error_rows(results, [(label, PAPER.get(label)) for label, _ in GRID], file_label)
    header = ["activation", "train error %", "test error %", "Xu et al. 2015 CIFAR-10 test error %"]
    figures = {"errors": draw_error_bars(bars, out_dir / "activations.png",
                                         "Test error by activation (ours) and Xu et al. 2015 (CIFAR-10, NiN)",
                                         paper_label="Xu et al. 2015, CIFAR-10"),
               "loss curves": draw_loss_curves(results, out_dir / "activations_loss.png",
                                               "Training loss per batch, first seed")}
    notes = ["Model: the zoo has no Network-in-Network; `vgg` stands in (3x3 convs, global average pooling), "
             "with batch normalization, which NiN did not have (it lets sigmoid and tanh train at all).",
             "As Xu et al.: no augmentation (`augment.policy=none`), centering only (`preprocess.normalize=center`).",
             f"Data: {data or size.source} (the paper: CIFAR-10), {size.subset or 'all'} training images, "
             f"{size.epochs} epoch(s), width {size.width}: a different dataset and scale can rank them differently.",
             "Leaky ReLU a is 1/slope as in the seed: a=100 is slope 0.01, a=5.5 is slope 0.18."]
    return write_results(out_dir, name="activations", title="Activations (seed §5, Xu et al. 2015)", notes=notes,
                         header=header, rows=rows, results=results, budget=budget, seed=seed, seeds=seeds,
                         data=data, figures=figures)
