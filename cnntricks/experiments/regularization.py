"""Regularizers on a fully connected net (seed §6; the slides' table from Srivastava et al. 2014,
"Dropout: A Simple Way to Prevent Neural Networks from Overfitting", Table 9, MNIST).

Srivastava et al. report test error 1.62 (L2), 1.60 (L2 + L1 towards the end of training),
1.35 (max-norm), 1.25 (dropout + L2), 1.05 % (dropout + max-norm). Here the same five run on
`model.name=mlp` with the penalties of `regularize.*` (weight decay off, so L2 is the seed's
½·λ·‖w‖² in the loss and nothing else), no augmentation.
"""
from __future__ import annotations

from pathlib import Path

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, draw_error_bars, draw_loss_curves, error_rows, prepare,
                                          run_grid, stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=8),
           # the whole training split, 16 epochs: an mlp of 256 units took ~35 s a run on a busy CPU (dropout
           # trailed the penalties by 2-3 points at 10 epochs and still at 16: docs/results.md)
           "small": Budget("fashion-mnist", subset=None, epochs=16, width=32),
           "full": Budget("fashion-mnist", subset=None, epochs=50, width=128, threads=None)}

L2 = "regularize.l2=5e-4"  # the recipe's weight decay, as a penalty
MAX_NORM = "regularize.max_norm=3.5"  # seed §6: "typical values of c are on orders of 3 or 4"
DROPOUT = "model.dropout=0.5"  # seed §6: p = 0.5
# Srivastava et al. 2014, Table 9 (MNIST, test error %), in the slides' order.
GRID = [("L2", [L2], 1.62),
        ("L2 + L1 towards the end", [L2, "regularize.l1=1e-5", "regularize.l1_start=0.8"], 1.60),
        ("max-norm", [MAX_NORM], 1.35),
        ("dropout + L2", [DROPOUT, L2], 1.25),
        ("dropout + max-norm", [DROPOUT, MAX_NORM], 1.05)]
COMMON = ["model.name=mlp", "model.depth=2", "optim.weight_decay=0", "augment.policy=none", "train.tta=false"]


def file_label(label: str) -> str:
    return label.replace(" + ", "+").replace(" ", "-")


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each config; the same at every budget (the budget adds its own)."""
    return [(file_label(label), COMMON + overrides) for label, overrides, _ in GRID]


@EXPERIMENTS.register("regularization")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """L2, L2+L1, max-norm, dropout+L2, dropout+max-norm on an MLP beside Srivastava et al. 2014 (seed §6)."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("regularization", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    rows, bars = error_rows(results, [(label, paper) for label, _, paper in GRID], file_label)
    header = ["regularizer", "train error %", "test error %", "Srivastava et al. 2014 MNIST test error %"]
    figures = {"errors": draw_error_bars(bars, out_dir / "regularization.png",
                                         "Test error by regularizer (ours) and Srivastava et al. 2014 (MNIST)",
                                         paper_label="Srivastava et al. 2014, MNIST"),
               "loss curves": draw_loss_curves(results, out_dir / "regularization_loss.png",
                                               "Training loss per batch (with the penalty), first seed")}
    notes = [f"Model: `mlp`, 2 hidden layers of {8 * size.width} units (Srivastava et al.: up to 3 x 1024-8192 "
             "units, dropout also on the input); no augmentation.",
             "L2 is ½·λ·‖w‖² with λ = 5e-4 (`regularize.l2`), weight decay off; L1 λ = 1e-5 from 80 % of "
             "training on; max-norm c = 3.5, projected after every step; dropout p = 0.5.",
             f"Data: {data or size.source} (the paper: MNIST), {size.subset or 'all'} training images, "
             f"{size.epochs} epoch(s)."]
    return write_results(out_dir, name="regularization", title="Regularization (seed §6, Srivastava et al. 2014)",
                         notes=notes, header=header, rows=rows, results=results, budget=budget, seed=seed,
                         seeds=seeds, data=data, figures=figures)
