"""Augmentation policies compared (seed §1): none, standard (flip + crop), the seed's random mix
of operations, and heavy (more of it, plus erasing and cutmix).

The seed gives no numbers here, only the claim that augmentation enlarges the training set and
fights overfitting. On gray data (Fashion-MNIST, digits) only the geometric operations apply; an
RGB source given with `--data` (e.g. `--data image-folder` with `data.root`, or an npz) turns on
Wei's HSV recipe and AlexNet's fancy PCA that the `seed` and `heavy` presets carry.
"""
from __future__ import annotations

import json
from pathlib import Path

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, draw_error_bars, draw_loss_curves, format_mean_std, prepare,
                                          run_grid, stderr_log, write_results)
from cnntricks.experiments.learning_rate import accuracy_gap

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=4),
           # 12 runs of fastnet (~10 s for 6,000 x 6 epochs at width 8 on a busy CPU): room for width 16
           # and more epochs, which augmentation needs before it pays
           "small": Budget("fashion-mnist", subset=10000, epochs=6, width=16),
           "full": Budget("fashion-mnist", subset=None, epochs=30, width=32, threads=None)}

POLICIES = [("none", "no augmentation: the baseline that overfits first"),
            ("standard", "flip + random crop: the common default"),
            ("seed", "the seed's random mix (translate, rotate, scale, stretch, shear, lens; HSV, fancy PCA on RGB)"),
            ("heavy", "more of the mix, plus erasing and cutmix")]
COMMON = ["model.name=fastnet"]


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each config; the same at every budget (the budget adds its own)."""
    return [(policy, COMMON + [f"augment.policy={policy}"]) for policy, _ in POLICIES]


@EXPERIMENTS.register("augmentation")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Augmentation none / standard / seed / heavy; colour operations on RGB data given by --data (seed §1)."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("augmentation", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    first = results["none"][0].run_dir / "data.json"
    channels = json.loads(first.read_text())["channels"] if first.exists() else None
    rows, bars = [], []
    for policy, claim in POLICIES:
        runs = results[policy]
        test = [r.test_error for r in runs]
        rows.append([policy, format_mean_std([r.train_error for r in runs]), format_mean_std(test),
                     format_mean_std([accuracy_gap(r) for r in runs], 1), claim])
        bars.append((policy, test, None))
    header = ["policy", "train error %", "test error %", "train − val acc (points)", "the seed says (no numbers)"]
    figures = {"errors": draw_error_bars(bars, out_dir / "augmentation.png", "Test error by augmentation policy"),
               "loss curves": draw_loss_curves(results, out_dir / "augmentation_loss.png",
                                               "Training loss per batch, first seed")}
    colour = ("RGB data: the colour operations (HSV, fancy PCA, jitter) of seed and heavy are on" if channels == 3
              else f"{channels}-channel data: geometric operations only (colour needs RGB, `--data` with an RGB source)")
    notes = [f"Model: `fastnet` (batch norm), width {size.width}; the recipe's other defaults.", colour + ".",
             "Train error is measured on augmented batches, so it rises with the policy's strength.",
             f"Data: {data or size.source}, {size.subset or 'all'} training images, {size.epochs} epoch(s); "
             "short runs favour weak augmentation, which pays off with more epochs."]
    return write_results(out_dir, name="augmentation", title="Data augmentation (seed §1)", notes=notes,
                         header=header, rows=rows, results=results, budget=budget, seed=seed, seeds=seeds,
                         data=data, figures=figures, extra={"channels": channels})
