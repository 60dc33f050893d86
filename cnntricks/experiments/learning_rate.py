"""The seed's §7 figures drawn from real runs, each with the doctor's verdict.

- Fig. 1: loss curves under a very high, high, low and good learning rate (very high explodes,
  high plateaus early at a high loss, low decreases slowly, good decreases fast to a low value);
- Fig. 2: per-batch loss for a small and a large batch: the band's width is the batch-to-batch
  noise, wider for small batches ("too wide: increase the batch size");
- Fig. 3: train and validation accuracy on a small training set without and with regularization
  (a large gap is overfitting: "increase regularization").

Plain `mlp` (no normalization hides nothing of the learning rate), constant LR without warm-up.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, RunResult, draw_loss_curves, format_mean_std, prepare,
                                          run_grid, smoothed, stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=4),
           "small": Budget("fashion-mnist", subset=20000, epochs=6, width=16),
           "full": Budget("fashion-mnist", subset=None, epochs=20, width=64, threads=None)}

COMMON = ["model.name=mlp", "model.depth=2", "schedule.name=constant", "schedule.warmup_epochs=0",
          "optim.label_smoothing=0", "augment.policy=none", "train.tta=false", "optim.weight_decay=0"]
# Learning rates of this mlp with Nesterov momentum 0.9 (an effective step 10x the LR), found by a
# sweep at the small budget: from 0.18 up some seeds blew up or killed their ReLUs (from 0.25 up all
# diverged), so "high" sits just below that edge, where the loss falls fast and then bounces above
# the good run's; at 0.001 the loss still fell fast (0.47 after 8 epochs), so "low" is 500x below "good".
GOOD_LR = 0.05
HIGH_LR = 0.15
LOW_LR = 1e-4
VERY_HIGH_LR = 3.0  # diverges within a few dozen steps at every budget
# Fig. 2: the loss is a batch mean, so the same LR serves both batch sizes; at 0.05 batch 16 blew
# up (per-batch loss ~500, then dead units) in the sweep, at 0.02 both batch sizes train
BATCH_LR = 0.02
SMALL_SET_SHARE = 0.1  # Fig. 3 trains on this share of the budget's training images ...
SMALL_SET_EPOCH_FACTOR = 5  # ... for this many times its epochs, long enough to overfit
BAND_WINDOW = 20  # steps in the running mean the band is measured around
FIG1_TOP = 2.0  # Fig. 1's y axis ends at this multiple of the first loss: the explosion leaves the chart
# (figure, label, overrides, what the seed says the figure shows)
FIG1 = [("very-high-lr", [f"optim.lr={VERY_HIGH_LR}"], "explodes (loss up or NaN)"),
        ("high-lr", [f"optim.lr={HIGH_LR}"], "drops fast, then stuck at a higher loss"),
        ("low-lr", [f"optim.lr={LOW_LR}"], "decreases slowly, nearly linearly"),
        ("good-lr", [f"optim.lr={GOOD_LR}"], "decreases fast, to a low loss")]
FIG2 = [("batch-16", [f"optim.lr={BATCH_LR}", "optim.batch_size=16"], "wide band"),
        ("batch-256", [f"optim.lr={BATCH_LR}", "optim.batch_size=256"], "narrow band")]
# regularized = the seed's §6 defaults (dropout p = 0.5, L2 as in the regularization study); no
# augmentation, which on this mlp made the train accuracy (read on augmented batches) fall below
# validation and so hid the gap the figure is about
FIG3_LABELS = {"small-set-unregularized": ([], "large train/val gap: overfitting"),
               "small-set-regularized": (["model.dropout=0.5", "regularize.l2=5e-4"], "smaller gap")}


def band_width(run: RunResult) -> float:
    """Std of the per-batch loss around its running mean over the second half of training."""
    losses = np.asarray(run.batch_loss, dtype=float)
    if run.diverged or len(losses) < 4:
        return math.nan
    residual = (losses - smoothed(run.batch_loss, BAND_WINDOW))[len(losses) // 2:]
    return float(np.nanstd(residual))


def accuracy_gap(run: RunResult) -> float:
    """Last epoch's train accuracy minus validation accuracy, in percentage points."""
    last = run.epochs[-1] if run.epochs else {}
    if last.get("train_acc") is None or last.get("val_acc") is None:
        return math.nan
    return 100 * (last["train_acc"] - last["val_acc"])


def doctor_verdict(run: RunResult) -> str:
    """The doctor's finding ids at warning or worse, for the table ("healthy" when none)."""
    from cnntricks.doctor import diagnose
    try:
        ids = sorted({f.id for f in diagnose(run.run_dir) if f.severity in ("warning", "error")})
    except (OSError, ValueError) as err:  # a run too short to read: say so rather than fail the study
        return f"(doctor: {err})"
    return ", ".join(ids) or "healthy"


def draw_batch_bands(results: dict[str, list[RunResult]], path: Path) -> Path:
    """Fig. 2: per-batch loss against epochs (so the batch sizes share an x axis)."""
    from cnntricks.report.figures import new_figure, save_png
    figure, (axes,) = new_figure(1, (8, 4.5))
    for index, (label, _, _) in enumerate(FIG2):
        run = results[label][0]
        losses = np.asarray(run.batch_loss, dtype=float)
        epochs = max(1, len(run.epochs))
        x = np.linspace(0, epochs, len(losses), endpoint=False)
        axes.plot(x, losses, color=f"C{index}", alpha=0.35, linewidth=0.7)
        axes.plot(x, smoothed(run.batch_loss, BAND_WINDOW), color=f"C{index}", linewidth=1.8,
                  label=f"{label}: band std {band_width(run):.3f}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss (per batch)")
    axes.set_title("Seed Fig. 2: the per-batch loss band narrows as the batch grows", fontsize=10)
    axes.legend(fontsize=8)
    return save_png(figure, path)


def draw_gap(results: dict[str, list[RunResult]], path: Path) -> Path:
    """Fig. 3: train (solid) and validation (dashed) accuracy per epoch, with and without regularization."""
    from cnntricks.report.figures import TRAIN_COLOR, VAL_COLOR, new_figure, save_png
    figure, panels = new_figure(len(FIG3_LABELS), (5 * len(FIG3_LABELS), 3.8))
    for axes, label in zip(panels, FIG3_LABELS):
        run = results[label][0]
        epochs = [record["epoch"] for record in run.epochs]
        axes.plot(epochs, [100 * record["train_acc"] for record in run.epochs], color=TRAIN_COLOR, label="train")
        axes.plot(epochs, [100 * (record["val_acc"] or 0) for record in run.epochs], color=VAL_COLOR,
                  linestyle="--", label="validation")
        axes.set_title(f"{label}: gap {accuracy_gap(run):.1f} points", fontsize=10)
        axes.set_xlabel("epoch")
    panels[0].set_ylabel("accuracy (%)")
    panels[0].legend(fontsize=8)
    return save_png(figure, path)


def small_set_size(size: Budget) -> int:
    """Fig. 3's training images: a share of the budget's (54,000 = Fashion-MNIST's training split)."""
    return max(100, int(SMALL_SET_SHARE * (size.subset or 54_000)))


def figure_entries(size: Budget) -> list[tuple[str, list[tuple[str, list[str], str]]]]:
    """[(figure, [(label, overrides, what the seed says)])] at budget `size`."""
    fig3 = [(label, [f"optim.lr={GOOD_LR}", f"data.subset={small_set_size(size)}",
                     f"train.epochs={SMALL_SET_EPOCH_FACTOR * size.epochs}", *overrides], expected)
            for label, (overrides, expected) in FIG3_LABELS.items()]
    return [("Fig. 1", FIG1), ("Fig. 2", FIG2), ("Fig. 3", fig3)]


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each run; Fig. 3's training set and epochs follow the budget."""
    return [(label, COMMON + overrides) for _, entries in figure_entries(size) for label, overrides, _ in entries]


@EXPERIMENTS.register("learning-rate")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """The seed's Fig. 1-3 from real runs: learning rates, batch sizes, the overfitting gap, with the doctor's verdict."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    small_set, figures_of = small_set_size(size), figure_entries(size)
    results = run_grid("learning-rate", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    rows, verdicts = [], {}
    for figure, entries in figures_of:
        for label, _, expected in entries:
            runs = results[label]
            verdicts[label] = [doctor_verdict(r) for r in runs]
            diverged = sum(r.diverged for r in runs)
            rows.append([figure, label, format_mean_std([r.final_loss() for r in runs], 3)
                         + (f" ({diverged}/{len(runs)} diverged)" if diverged and diverged < len(runs) else
                            " (diverged)" if diverged else ""),
                         format_mean_std([r.test_error for r in runs]),
                         format_mean_std([band_width(r) for r in runs], 3),
                         format_mean_std([accuracy_gap(r) for r in runs], 1),
                         "; ".join(sorted(set(verdicts[label]))), expected])
    header = ["figure", "run", "final loss", "test error %", "band std", "train − val acc (points)",
              "doctor (warning+)", "the seed says"]
    figures = {"fig1": draw_loss_curves(results, out_dir / "fig1_learning_rates.png",
                                        "Seed Fig. 1: loss under very high / high / low / good learning rates",
                                        labels=[label for label, _, _ in FIG1], window=BAND_WINDOW,
                                        top=FIG1_TOP * results["good-lr"][0].first_loss()),
               "fig2": draw_batch_bands(results, out_dir / "fig2_batch_sizes.png"),
               "fig3": draw_gap(results, out_dir / "fig3_overfitting.png")}
    notes = [f"Model: `mlp`, 2 hidden layers of {8 * size.width} units, no normalization; SGD with Nesterov "
             "momentum 0.9, constant LR without warm-up, no label smoothing.",
             f"Fig. 1 learning rates: very high {VERY_HIGH_LR}, high {HIGH_LR}, low {LOW_LR}, good {GOOD_LR}; "
             f"Fig. 2 at lr {BATCH_LR} for both batch sizes (the loss is a batch mean, so the LR needs no "
             f"rescaling; at {GOOD_LR} batch 16 blew up); band std: std of the per-batch loss around its "
             f"{BAND_WINDOW}-step mean over the second half.",
             f"Fig. 3: {small_set} training images for {SMALL_SET_EPOCH_FACTOR * size.epochs} epochs; regularized = "
             "dropout 0.5 + L2 5e-4 (train accuracy is read on the training batches, with dropout on).",
             "Doctor: `cnntricks doctor runs/<label>-seed<k>` gives each finding's evidence and advice.",
             f"Data: {data or size.source}, {size.subset or 'all'} training images, {size.epochs} epoch(s)."]
    return write_results(out_dir, name="learning-rate", title="Insights from figures (seed §7, Fig. 1-3)",
                         notes=notes, header=header, rows=rows, results=results, budget=budget, seed=seed,
                         seeds=seeds, data=data, figures=figures, extra={"doctor": verdicts})
