"""The figures of a run's report (seed §7, "Insights from Figures"; the slides' first-layer weights).

The seed reads a run from its figures: the loss over time (its shape says whether the learning
rate is too high or too low; the width of the per-batch band says whether the batch is too
small), the train and validation accuracy (a gap means overfitting, no gap at low accuracy means
too little capacity), the learning rate that produced them, and the first layer's filters (noisy
filters: regularization may be too weak). The monitor's `stats.jsonl` adds what a loss curve
hides: activation spread along depth (seed §3), dead and saturated units (seed §5), gradient norms
and update-to-weight ratios. Each `*_figure` function here draws from plain data; `run_report.py` reads
the run directory and calls them. `plot_curves` draws the three history figures on its own.

Everything is drawn on the Agg canvas through the object API (`Figure`, not pyplot), so drawing
never switches the backend of the process that imports this module and keeps no figures alive.
Colours are the same everywhere: train blue, validation orange, depth from dark to light.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnntricks.rundir import read_history as read_records
from cnntricks.rundir import split_history, write_atomic

DPI = 110
TRAIN_COLOR, VAL_COLOR, GAP_COLOR = "tab:blue", "tab:orange", "tab:red"
TREND_COLOR = "navy"  # the per-batch trend: the train colour, darker
EVENT_STYLES = {"nonfinite": ("red", "-"), "lr_divided": ("tab:green", "--"), "target_reached": ("tab:purple", ":")}
DEPTH_COLORS = colormaps["viridis"]  # first layer dark, last light
WIDE = (11, 4.4)  # inches: 1210 px at DPI, the page's width, so the report shows figures at 100%
HEALTHY_UPDATE_RATIO = 1e-3  # ‖Δw‖/‖w‖ per step; CS231n (the seed's ref. 3): "somewhere around 1e-3"
DEAD_SHARE = 0.4  # seed §5: "as much as 40% of your network can be dead"
LEGEND_MAX = 10  # more lines than this get a depth colour bar instead of a legend


def read_history(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(batch records, epoch records) from `<run_dir>/history.jsonl`, in file order."""
    return split_history(read_records(run_dir))


def plain(text) -> str:
    """`text` for a matplotlib label: '$' escaped, so a class named 'a$b$' is not read as math."""
    return str(text).replace("$", r"\$")


def column(records: list[dict], key: str) -> np.ndarray:
    """record[key] for each record as floats; missing, null and infinite values become NaN (a gap)."""
    values = np.array([record.get(key) if record.get(key) is not None else math.nan for record in records],
                      dtype=float)
    values[~np.isfinite(values)] = math.nan
    return values


def rolling_quantiles(values: np.ndarray, window: int, quantiles: tuple[float, ...],
                      points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(centre indices, (len(quantiles), m) array): the quantiles of each centred `window` of values,
    at no more than `points` evenly spaced centres (a long run needs no more to draw). NaNs are skipped."""
    windows = np.lib.stride_tricks.sliding_window_view(values, window)  # (n - window + 1, window), no copy
    starts = np.unique(np.linspace(0, len(windows) - 1, min(points, len(windows))).round().astype(int))
    chosen = windows[starts]
    usable = np.isfinite(chosen).sum(axis=1) > window // 2
    result = np.full((len(quantiles), len(starts)), math.nan)
    if usable.any():
        result[:, usable] = np.nanquantile(chosen[usable], quantiles, axis=1)
    return starts + window // 2, result


def new_figure(columns: int = 1, size: tuple[float, float] | None = None) -> tuple[Figure, list]:
    figure = Figure(figsize=size or (5.5 * columns, 4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attach the Agg canvas: raster output, no GUI, no pyplot state
    return figure, [figure.add_subplot(1, columns, i + 1) for i in range(columns)]


def say_no_data(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} in the history yet", ha="center", va="center",
              transform=axes.transAxes, color="gray")


def log_scale_if_wide(axes, values: np.ndarray, decades: float = 1.0) -> None:
    """A log y-axis when the positive values span more than `decades` decades."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and positive.max() > positive.min() * 10 ** decades:
        axes.set_yscale("log")


def plot_epoch_lines(axes, epochs: list[dict], keys: dict[str, tuple[str, str]], scale: float = 1.0,
                     unit: str = "", x: np.ndarray | None = None) -> bool:
    """One line with markers per key present (markers keep a single epoch visible), the last value
    in the legend; at `x` (default: the epochs, on whole-number ticks). False when no key has a value."""
    if x is None:
        x = column(epochs, "epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if np.unique(x[np.isfinite(x)]).size == 1:  # one epoch: no span for the locator to divide
            axes.set_xticks(np.unique(x[np.isfinite(x)]))
    drawn = False
    for key, (label, color) in keys.items():
        y = column(epochs, key) * scale
        finite = y[np.isfinite(y)]
        if finite.size:
            axes.plot(x, y, marker="o", markersize=5, linewidth=1.8, color=color, zorder=5,
                      label=f"{label} (last {finite[-1]:.3g}{unit})")
            drawn = True
    return drawn


def epoch_end_steps(batches: list[dict], epochs: list[dict]) -> np.ndarray:
    """The step at which each epoch record's epoch ended (its last batch), for drawing epochs on a
    step axis; epochs with no batch of their own are placed by the average steps per epoch."""
    last_step: dict = {}
    for record in batches:
        if record.get("epoch") is not None and record.get("step") is not None:
            last_step[record["epoch"]] = max(record["step"], last_step.get(record["epoch"], record["step"]))
    per_epoch = max(last_step.values()) / max(len(last_step), 1) if last_step else 1.0
    return np.array([last_step.get(e, (e or 0) * per_epoch) for e in (r.get("epoch") for r in epochs)], dtype=float)


def event_position(event: dict, batches: list[dict], on_steps: bool) -> float | None:
    """Where an event goes on the x-axis: its step, or the end of its epoch."""
    if on_steps and event.get("step") is not None:
        return float(event["step"])
    if event.get("epoch") is None:
        return None
    return float(epoch_end_steps(batches, [event])[0]) if on_steps else float(event["epoch"])


def mark_events(axes, events: list[dict], batches: list[dict], on_steps: bool,
                kinds: tuple[str, ...] | None = None) -> None:
    """A vertical line per history event (`kinds` only, when given), one legend entry per kind."""
    labelled = set()
    for event in events:
        kind = str(event.get("event", "event"))
        x = event_position(event, batches, on_steps)
        if x is None or (kinds is not None and kind not in kinds):
            continue
        color, style = EVENT_STYLES.get(kind, ("gray", ":"))
        where = f"step {x:g}" if on_steps else f"epoch {x:g}"
        label = None if kind in labelled else (f"loss not finite ({where})" if kind == "nonfinite" else plain(kind))
        labelled.add(kind)
        axes.axvline(x, color=color, linestyle=style, linewidth=1.6 if kind == "nonfinite" else 1.2, label=label)


def label_epochs_on_top(axes, batches: list[dict], epochs: list[dict]) -> None:
    """Epoch numbers along the top of a step axis, at the step each epoch ended."""
    ends = epoch_end_steps(batches, epochs)
    if ends.size == 0:
        return
    top = axes.secondary_xaxis("top")
    shown = np.unique(np.linspace(0, len(ends) - 1, min(len(ends), 12)).round().astype(int))  # <= 12 labels
    top.set_xticks(ends[shown], [f"{epochs[i]['epoch']}" for i in shown])
    top.set_xlabel("end of epoch", fontsize=9)
    top.tick_params(labelsize=8)


def smoothed_loss_floor(smoothing: float, classes: int) -> float:
    """The lowest cross-entropy against label-smoothed targets (1 - ε + ε/C on the true class, ε/C on each
    other): their entropy, which a perfect model still pays."""
    true, other = 1 - smoothing + smoothing / classes, smoothing / classes
    return float(-true * math.log(true) - (classes - 1) * (other * math.log(other) if other > 0 else 0.0))


def loss_figure(batches: list[dict], epochs: list[dict], title: str, events: list[dict] = (),
                smoothing: tuple[float, int] | None = None) -> Figure:
    """Seed Fig. 2 and Fig. 1 in one: the per-batch loss (thin) with its rolling median and a band of the
    10-90% quantiles of the batches around it, whose width is the batch-to-batch variance; per-epoch train and
    validation loss on top, at the step each epoch ended; non-finite losses marked in red. `smoothing` =
    (ε, classes) of label smoothing: the training loss's floor drawn, since the validation loss (plain
    cross-entropy) may then sit below the training loss."""
    figure, (axes,) = new_figure(size=WIDE)
    figure.suptitle(f"loss: {plain(title)}", fontsize=12)
    axes.set_title("trend too straight: LR too low; stalls high: LR too high; wide band: batch too small (seed §7)",
                   fontsize=9, color="dimgray")
    on_steps = bool(batches)
    everything = [np.array([])]
    if batches:
        steps, losses = column(batches, "step"), column(batches, "loss")
        axes.plot(steps, losses, linewidth=0.6, alpha=0.3, color=TRAIN_COLOR, label="batch loss")
        window = int(np.clip(len(losses) // 15, 5, 500))
        if len(losses) >= 2 * window:  # otherwise too few batches to smooth into a line
            centres, (median,) = rolling_quantiles(losses, window, (0.5,))
            # The band is the spread around the trend, not the trend's own fall within a window: a
            # steep start would otherwise look like noisy batches.
            trend = np.interp(np.arange(len(losses)), centres, median)
            _, (low, high) = rolling_quantiles(losses - trend, window, (0.1, 0.9))
            low, high = median + low, median + high
            axes.fill_between(steps[centres], low, high, color=TRAIN_COLOR, alpha=0.22, linewidth=0,
                              label=f"spread: 10–90% of each {window} batches")
            axes.plot(steps[centres], median, linewidth=2, color=TREND_COLOR, label=f"trend: median of {window} batches")
        everything.append(losses)
        label_epochs_on_top(axes, batches, epochs)
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs:
        x = epoch_end_steps(batches, epochs) if on_steps else None
        plot_epoch_lines(axes, epochs, {"train_loss": ("train, epoch mean", TRAIN_COLOR),
                                        "val_loss": ("validation", VAL_COLOR)}, x=x)
        everything += [column(epochs, "train_loss"), column(epochs, "val_loss")]
        if not on_steps:
            axes.set_xlabel("epoch")
    if not batches and not epochs:
        say_no_data(axes, "losses")
    if smoothing is not None and smoothing[0] > 0 and (batches or epochs):
        floor = smoothed_loss_floor(*smoothing)
        axes.axhline(floor, color="dimgray", linestyle=":", linewidth=1.2,
                     label=f"floor of the training loss: label smoothing {smoothing[0]:g} (validation: plain "
                           f"cross-entropy, may sit below)")
        everything.append(np.array([floor]))
    mark_events(axes, list(events), batches, on_steps, kinds=("nonfinite",))
    if batches and "nonfinite" not in {e.get("event") for e in events}:  # a loop that wrote nulls without events
        steps, broken = column(batches, "step"), np.flatnonzero(~np.isfinite(column(batches, "loss")))
        if broken.size:
            axes.axvline(steps[broken[0]], color="red", linewidth=1.6,
                         label=f"loss not finite from step {steps[broken[0]]:g}")
    log_scale_if_wide(axes, np.concatenate(everything))
    axes.set_ylabel("loss" + (" (log scale)" if axes.get_yscale() == "log" else ""))
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=9, loc="best")
    return figure


def accuracy_figure(epochs: list[dict], title: str) -> Figure:
    """Seed Fig. 3: train and validation accuracy per epoch in percent, the gap between them shaded."""
    figure, (axes,) = new_figure(size=(8, 4.4))
    figure.suptitle(f"accuracy: {plain(title)}", fontsize=12)
    axes.set_title("wide gap: overfitting (regularize more); no gap at low accuracy: too little capacity",
                   fontsize=9, color="dimgray")
    if epochs:
        plot_epoch_lines(axes, epochs, {"train_acc": ("train", TRAIN_COLOR)}, scale=100, unit="%")
        has_validation = plot_epoch_lines(axes, epochs, {"val_acc": ("validation", VAL_COLOR)}, scale=100, unit="%")
        x, train, val = column(epochs, "epoch"), 100 * column(epochs, "train_acc"), 100 * column(epochs, "val_acc")
        both = np.isfinite(train) & np.isfinite(val)
        handles, labels = axes.get_legend_handles_labels()
        if both.any():
            axes.fill_between(x, train, val, where=both, color=GAP_COLOR, alpha=0.15, linewidth=0)
            gap = train[both][-1] - val[both][-1]
            handles.append(Patch(color=GAP_COLOR, alpha=0.15))
            labels.append(f"gap at epoch {x[both][-1]:g}: {gap:+.1f} points")
        axes.legend(handles, labels, title=None if has_validation else "no validation split", fontsize=9)
    else:
        say_no_data(axes, "finished epochs")
    axes.yaxis.set_major_formatter(PercentFormatter(100))
    axes.set(xlabel="epoch", ylabel="accuracy")
    axes.grid(alpha=0.3)
    return figure


def lr_figure(batches: list[dict], epochs: list[dict], title: str, events: list[dict] = ()) -> Figure:
    """The learning rate per step (per epoch when the run logged no batches), events marked."""
    figure, (axes,) = new_figure(size=(8, 4))
    figure.suptitle(f"learning rate: {plain(title)}", fontsize=12)
    axes.set_title("the schedule behind the loss curve; vertical lines: events (LR divided on a plateau, seed §4)",
                   fontsize=9, color="dimgray")
    per_step = [record for record in batches if record.get("lr") is not None]
    if per_step:
        axes.plot(column(per_step, "step"), column(per_step, "lr"), color=TRAIN_COLOR, linewidth=1.8, label="LR")
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif epochs:
        plot_epoch_lines(axes, epochs, {"lr": ("LR", TRAIN_COLOR)})
        axes.set_xlabel("epoch")
    else:
        say_no_data(axes, "learning rates")
    mark_events(axes, list(events), batches, on_steps=bool(per_step))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=9)
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes.set(ylabel="learning rate")
    axes.grid(alpha=0.3)
    return figure


# ---- the monitor's stats.jsonl (format: monitor/monitor.py) ----------------------------------

def save_png(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` atomically: a reader (or a report being rebuilt) never sees half a file."""
    return write_atomic(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


def plot_curves(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw loss.png, accuracy.png and lr.png for a run into `out_dir` (default `<run_dir>/report`).

    Works on a run still in progress, a run with one epoch and a run without validation.
    Returns the paths written. `write_report` (run_report.py) draws these and the other figures.
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    records = read_records(run_dir)
    batches, epochs = split_history(records)
    events = [r for r in records if r.get("kind") == "event"]
    out_dir.mkdir(parents=True, exist_ok=True)
    title = run_dir.resolve().name
    return [save_png(loss_figure(batches, epochs, title, events), out_dir / "loss.png"),
            save_png(accuracy_figure(epochs, title), out_dir / "accuracy.png"),
            save_png(lr_figure(batches, epochs, title, events), out_dir / "lr.png")]
