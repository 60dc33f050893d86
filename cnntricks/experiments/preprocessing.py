"""Pre-processing compared (seed §2): none, zero-centering, standardization, PCA whitening, ZCA.

All five feed the same `mlp` (PCA whitening gives each image as a vector of components, which
only the MLP reads), with the statistics fitted on the training split only. The seed gives no
numbers; it says centering and normalizing are standard, and that whitening amplifies noise
unless epsilon damps it.
"""
from __future__ import annotations

from pathlib import Path

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, draw_error_bars, draw_loss_curves, format_mean_std, prepare,
                                          run_grid, stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=4),
           # the whole training split, as the regularization study (the same mlp, ~25 s a run)
           "small": Budget("fashion-mnist", subset=None, epochs=10, width=32),
           "full": Budget("fashion-mnist", subset=None, epochs=30, width=128, threads=None)}

# (label, overrides, what the seed says)
GRID = [("none", ["preprocess.normalize=none"], "raw pixels: slower, worse-conditioned training"),
        ("center", ["preprocess.normalize=center"], "zero-center: the standard first step"),
        ("standardize", ["preprocess.normalize=standardize"], "center, then divide by the std"),
        ("pca-whiten", ["preprocess.normalize=center", "preprocess.whiten=pca", "preprocess.eps=0.1"],
         "decorrelate, unit variance per component; noise amplified"),
        ("zca-whiten", ["preprocess.normalize=center", "preprocess.whiten=zca", "preprocess.eps=0.1"],
         "PCA whitening rotated back to pixel space")]
# the loss figure's y axis ends at this multiple of the first loss: raw 0-255 pixels sent the loss to
# ~1e21 in the first steps (measured), which flattened the other four curves into the x axis
LOSS_TOP = 2.0
COMMON = ["model.name=mlp", "model.depth=2", "augment.policy=none", "train.tta=false"]


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each config; the same at every budget (the budget adds its own)."""
    return [(label, COMMON + overrides) for label, overrides, _ in GRID]


@EXPERIMENTS.register("preprocessing")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Pre-processing none / center / standardize / PCA whitening / ZCA on one MLP (seed §2)."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("preprocessing", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    rows, bars = [], []
    for label, _, claim in GRID:
        runs = results[label]
        test = [r.test_error for r in runs]
        rows.append([label, format_mean_std([r.train_error for r in runs]), format_mean_std(test),
                     format_mean_std([r.final_loss() for r in runs], 3), claim])
        bars.append((label, test, None))
    header = ["pre-processing", "train error %", "test error %", "final loss", "the seed says (no numbers)"]
    figures = {"errors": draw_error_bars(bars, out_dir / "preprocessing.png", "Test error by pre-processing"),
               "loss curves": draw_loss_curves(results, out_dir / "preprocessing_loss.png",
                                               "Training loss per batch, first seed", window=20,
                                               top=LOSS_TOP * results["standardize"][0].first_loss())}
    notes = [f"Model: `mlp`, 2 hidden layers of {8 * size.width} units, for all five (PCA whitening needs it); "
             "statistics fitted on the training split only; no augmentation.",
             "Whitening epsilon 0.1 on pixels scaled to [0, 1] (the seed's 1e-5 amplifies pixel noise; "
             "`preprocess.eps`); all components kept.",
             f"Data: {data or size.source}, {size.subset or 'all'} training images, {size.epochs} epoch(s). "
             "The seed's `cnntricks` whitening demo (originals / eigenvectors / reduced / whitened) is "
             "`report/whitening_demo.py`."]
    return write_results(out_dir, name="preprocessing", title="Pre-processing (seed §2)", notes=notes,
                         header=header, rows=rows, results=results, budget=budget, seed=seed, seeds=seeds,
                         data=data, figures=figures)
