"""Training curves drawn from a run's history (seed §7, "Insights from Figures").

The seed reads a run from its figures: the loss over time (its shape says whether the learning
rate is too high or too low; the width of the per-batch band says whether the batch is too
small), the train and validation accuracy (a gap means overfitting, no gap at low accuracy means
too little capacity), and the learning rate that produced them. `plot_curves` draws these three
from `<run_dir>/history.jsonl` into `<run_dir>/report/`.

This is the only module of cnntricks that imports matplotlib. It draws on the Agg canvas through
the object API (`Figure`, not pyplot), so it never switches the backend of the process that
imports it and keeps no figures alive after saving.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnntricks.train.history import read_history as read_records, split_history

DPI = 110
TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"


def read_history(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(batch records, epoch records) from `<run_dir>/history.jsonl`, in file order."""
    return split_history(read_records(run_dir))


def column(records: list[dict], key: str) -> np.ndarray:
    """record[key] for each record as floats; missing, null and infinite values become NaN (a gap)."""
    values = np.array([record.get(key) if record.get(key) is not None else math.nan for record in records],
                      dtype=float)
    values[~np.isfinite(values)] = math.nan
    return values


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each `window` consecutive values (len(values) - window + 1 of them)."""
    return np.convolve(values, np.ones(window) / window, mode="valid")


def new_figure(columns: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=(5.5 * columns, 4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attach the Agg canvas: raster output, no GUI, no pyplot state
    return figure, [figure.add_subplot(1, columns, i + 1) for i in range(columns)]


def say_no_data(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} in the history yet", ha="center", va="center",
              transform=axes.transAxes, color="gray")


def plot_epoch_lines(axes, epochs: list[dict], keys: dict[str, tuple[str, str]], scale: float = 1.0,
                     unit: str = "") -> bool:
    """One line with markers per key present (markers keep a single epoch visible), the last value
    in the legend; epochs on whole-number ticks. False when none of the keys has a value."""
    x = column(epochs, "epoch")
    drawn = False
    for key, (label, color) in keys.items():
        y = column(epochs, key) * scale
        finite = y[np.isfinite(y)]
        if finite.size:
            axes.plot(x, y, marker="o", markersize=4, color=color, label=f"{label} (last {finite[-1]:.3g}{unit})")
            drawn = True
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if np.unique(x[np.isfinite(x)]).size == 1:  # one epoch: no span for the locator to divide
        axes.set_xticks(np.unique(x[np.isfinite(x)]))
    return drawn


def loss_figure(batches: list[dict], epochs: list[dict], title: str) -> Figure:
    """Per-batch loss (thin) with its rolling mean, beside per-epoch train and validation loss."""
    figure, (per_batch, per_epoch) = new_figure(columns=2)
    figure.suptitle(f"loss: {title}")
    if batches:
        steps, losses = column(batches, "step"), column(batches, "loss")
        per_batch.plot(steps, losses, linewidth=0.6, alpha=0.4, color=TRAIN_COLOR, label="batch loss")
        window = max(5, len(losses) // 25)
        if len(losses) >= 2 * window:  # otherwise too few batches to smooth into a line
            per_batch.plot(steps[window - 1:], rolling_mean(losses, window), linewidth=1.8, color="navy",
                           label=f"mean of last {window} batches")
        broken = np.flatnonzero(~np.isfinite(losses))
        if broken.size:  # seed §7: a loss that explodes means a learning rate far too high
            per_batch.axvline(steps[broken[0]], color="red", linestyle="--",
                              label=f"loss not finite from step {steps[broken[0]]:g}")
        per_batch.legend()
    else:
        say_no_data(per_batch, "per-batch records")
    per_batch.set(title="per batch", xlabel="step", ylabel="loss")
    per_batch.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs:
        plot_epoch_lines(per_epoch, epochs, {"train_loss": ("train", TRAIN_COLOR), "val_loss": ("validation", VAL_COLOR)})
        per_epoch.legend()
    else:
        say_no_data(per_epoch, "finished epochs")
    per_epoch.set(title="per epoch", xlabel="epoch", ylabel="loss")
    return figure


def accuracy_figure(epochs: list[dict], title: str) -> Figure:
    """Train and validation accuracy per epoch in percent; the gap between them is the point."""
    figure, (axes,) = new_figure()
    if epochs:
        plot_epoch_lines(axes, epochs, {"train_acc": ("train", TRAIN_COLOR)}, scale=100, unit="%")
        has_validation = plot_epoch_lines(axes, epochs, {"val_acc": ("validation", VAL_COLOR)}, scale=100, unit="%")
        axes.legend(title=None if has_validation else "no validation split")
    else:
        say_no_data(axes, "finished epochs")
    axes.yaxis.set_major_formatter(PercentFormatter(100))
    axes.set(title=f"accuracy: {title}", xlabel="epoch", ylabel="accuracy")
    axes.grid(alpha=0.3)
    return figure


def lr_figure(batches: list[dict], epochs: list[dict], title: str) -> Figure:
    """The learning rate per step, or per epoch when the run logged no batches."""
    figure, (axes,) = new_figure()
    per_step = [record for record in batches if record.get("lr") is not None]
    if per_step:
        axes.plot(column(per_step, "step"), column(per_step, "lr"), color=TRAIN_COLOR)
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif epochs:
        plot_epoch_lines(axes, epochs, {"lr": ("learning rate", TRAIN_COLOR)})
        axes.set_xlabel("epoch")
    else:
        say_no_data(axes, "learning rates")
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes.set(title=f"learning rate: {title}", ylabel="learning rate")
    axes.grid(alpha=0.3)
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` atomically: a reader (or a report being rebuilt) never sees half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png.part")
    try:
        with os.fdopen(descriptor, "wb") as file:
            figure.savefig(file, format="png", dpi=DPI)
        os.chmod(temporary, 0o644)  # mkstemp makes files private; a report is meant to be read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def plot_curves(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw loss.png, accuracy.png and lr.png for a run into `out_dir` (default `<run_dir>/report`).

    Works on a run still in progress, a run with one epoch and a run without validation.
    Returns the paths written.
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    batches, epochs = read_history(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = run_dir.resolve().name
    return [save_png(loss_figure(batches, epochs, title), out_dir / "loss.png"),
            save_png(accuracy_figure(epochs, title), out_dir / "accuracy.png"),
            save_png(lr_figure(batches, epochs, title), out_dir / "lr.png")]
