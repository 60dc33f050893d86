"""The report's figures of what the model did: layer statistics from stats.jsonl (activation
spread along depth, seed §3; dead and saturated units, seed §5; gradient norms and update-to-weight
ratios), the first layer's filters (the slides: noisy filters, regularization too weak), the test
confusion matrix and the most confident mistakes. Same conventions as `figures.py` (the curves):
plain data in, an Agg `Figure` out, depth coloured from dark to light.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnntricks.report.figures import (DEAD_SHARE, DEPTH_COLORS, DPI, GAP_COLOR, HEALTHY_UPDATE_RATIO, LEGEND_MAX,
                                      TRAIN_COLOR, VAL_COLOR, WIDE, column, log_scale_if_wide, new_figure, plain)


def names_in_order(stats: list[dict], section: str) -> list[str]:
    """The keys of `section` ("layers" or "params") in first-seen order: the network's order."""
    return list(dict.fromkeys(name for record in stats for name in record.get(section, {})))


def series(stats: list[dict], section: str, name: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of record[section][name][key] over the records that have `name`; null -> NaN."""
    having = [r for r in stats if name in r.get(section, {})]
    return column(having, "step"), column([r[section][name] for r in having], key)


def depth_colors(count: int) -> list:
    return [DEPTH_COLORS(0.9 * i / max(count - 1, 1)) for i in range(count)]


def depth_key(figure: Figure, axes, names: list[str], location=None, bar_beside=None) -> None:
    """A legend naming each line, or, with more than LEGEND_MAX `names` (layers), a colour bar of depth
    (beside `bar_beside`, default `axes`) and a legend of the other lines (reference lines, the input)."""
    if len(names) <= LEGEND_MAX:
        axes.legend(fontsize=8, loc=location or "best")
        return
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), DEPTH_COLORS), ax=bar_beside or axes, ticks=[0, 0.9], shrink=0.9)
    bar.ax.set_yticklabels([f"first\n{plain(names[0])}", f"last\n{plain(names[-1])}"], fontsize=8)
    bar.ax.set_ylim(0, 0.9)
    bar.set_label("depth", fontsize=9)
    layers = {plain(name) for name in names}
    others = [(h, label) for h, label in zip(*axes.get_legend_handles_labels()) if label not in layers]
    if others:
        axes.legend(*zip(*others), fontsize=8, loc=location or "best")


def activations_figure(stats: list[dict], title: str, edges) -> Figure:
    """Mean and std of each activation's output over steps (one line per layer, coloured by depth),
    and the histogram of each layer's last sampled output. `edges(layer)` gives a layer record's
    bin edges (monitor.histogram_edges)."""
    layers = names_in_order(stats, "layers")
    rows = math.ceil(len(layers) / 5)
    figure = Figure(figsize=(WIDE[0], 4.2 + 1.9 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"activations per layer: {plain(title)}", fontsize=12)
    top, bottom = figure.subfigures(2, 1, height_ratios=[4.2, 1.9 * rows])
    mean_axes, std_axes = top.subplots(1, 2)
    colors = depth_colors(len(layers))
    types = {name: next(r["layers"][name].get("type", "") for r in stats if name in r.get("layers", {}))
             for name in layers}
    labels = {name: f"{name} ({types[name]})" for name in layers}
    for color, name in zip(colors, layers):
        for axes, key in ((mean_axes, "mean"), (std_axes, "std")):
            steps, values = series(stats, "layers", name, key)
            axes.plot(steps, values, color=color, linewidth=1.5, label=plain(labels[name]))
    if any("input" in r for r in stats):  # the input's spread: the reference for the layers' (seed §3)
        having = [r for r in stats if "input" in r]
        for axes, key in ((mean_axes, "mean"), (std_axes, "std")):
            axes.plot(column(having, "step"), column([r["input"] for r in having], key), color="black",
                      linestyle="--", linewidth=1.2, label="input")
    mean_axes.set(title="mean of each layer's output", xlabel="step")
    std_axes.set(title="std: should stay of one order along depth (seed §3)", xlabel="step")
    std_values = np.concatenate([series(stats, "layers", n, "std")[1] for n in layers] or [np.array([])])
    log_scale_if_wide(std_axes, std_values)
    for axes in (mean_axes, std_axes):
        axes.title.set_fontsize(10)
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    depth_key(top, std_axes, list(labels.values()))
    bottom.suptitle("histogram of each layer's output at the last sampled step (share of values)", fontsize=10)
    grid = bottom.subplots(rows, min(5, len(layers)), squeeze=False).ravel()
    for axes, color, name in zip(grid, colors, layers):
        record = next(r for r in reversed(stats) if name in r.get("layers", {}))
        layer, step = record["layers"][name], record.get("step")
        axes.set_title(plain(f"{name} ({types[name]}), step {step}"), fontsize=8)
        axes.tick_params(labelsize=7)
        counts, bin_edges = np.asarray(layer.get("hist", []), dtype=float), edges(layer)
        if counts.sum() == 0 or len(bin_edges) != len(counts) + 1:
            axes.text(0.5, 0.5, "not finite" if not bin_edges else "no values", ha="center", va="center",
                      transform=axes.transAxes, color="gray")
        elif bin_edges[0] == bin_edges[-1]:  # every value the same (e.g. a dead layer: all 0)
            axes.text(0.5, 0.5, f"all values = {bin_edges[0]:.3g}", ha="center", va="center",
                      transform=axes.transAxes, color=GAP_COLOR)
        else:
            axes.stairs(counts / counts.sum(), bin_edges, fill=True, color=color)
            axes.yaxis.set_major_formatter(PercentFormatter(1, decimals=0))
    for axes in grid[len(layers):]:
        axes.set_axis_off()
    return figure


def gradients_figure(stats: list[dict], title: str) -> Figure:
    """Per weight tensor the gradient norm and the update-to-weight ratio over steps (log y, a dotted
    line at the healthy 1e-3), and the total gradient norm."""
    params = names_in_order(stats, "params")
    figure = Figure(figsize=(WIDE[0], 7.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"gradients and updates: {plain(title)}", fontsize=12)
    grid = figure.add_gridspec(2, 2, height_ratios=[1.4, 1])
    grad_axes, ratio_axes = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    total_axes = figure.add_subplot(grid[1, :])
    for color, name in zip(depth_colors(len(params)), params):
        for axes, key in ((grad_axes, "grad_norm"), (ratio_axes, "update_ratio")):
            steps, values = series(stats, "params", name, key)
            values[values <= 0] = math.nan  # log axis
            axes.plot(steps, values, color=color, linewidth=1.4, label=plain(name))
    ratio_axes.axhline(HEALTHY_UPDATE_RATIO, color="black", linestyle=":", linewidth=1.5,
                       label="1e-3: the usual healthy ratio")
    steps, total = column(stats, "step"), column(stats, "grad_norm_total")
    total[total <= 0] = math.nan
    total_axes.plot(steps, total, color=TRAIN_COLOR, linewidth=1.8, label="‖g‖ over all parameters")
    grad_axes.set(title="gradient norm ‖∂L/∂w‖ per weight tensor\nfalling along depth: vanishing gradients",
                  xlabel="step")
    ratio_axes.set(title="update ratio ‖Δw‖/‖w‖ per step\nfar above 1e-3: LR too high; far below: LR too low",
                   xlabel="step")
    total_axes.set(title="total gradient norm: spikes or steady growth = exploding gradients", xlabel="step")
    for axes in (grad_axes, ratio_axes):  # log: norms of different tensors differ by orders
        values = np.concatenate([line.get_ydata() for line in axes.get_lines()] or [np.array([])])
        positive = values[np.isfinite(values) & (values > 0)]
        if positive.size and positive.min() == positive.max():  # one value: give the log axis a span
            axes.set_ylim(positive.min() / 10, positive.max() * 10)
        axes.set_yscale("log")
    log_scale_if_wide(total_axes, total)
    for axes in (grad_axes, ratio_axes, total_axes):
        axes.title.set_fontsize(10)
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    depth_key(figure, grad_axes, params, bar_beside=[grad_axes, ratio_axes])
    ratio_axes.legend(handles=ratio_axes.get_lines()[-1:], fontsize=8, loc="best")
    total_axes.legend(fontsize=8)
    return figure


def dead_units_figure(stats: list[dict], title: str) -> Figure:
    """The share of dead units per ReLU-family layer over steps (a dashed line at the seed's 40%), and
    the share of saturated outputs per tanh / sigmoid layer. ValueError when there are neither."""
    layers = names_in_order(stats, "layers")
    dead = [n for n in layers if any(r["layers"].get(n, {}).get("dead") is not None for r in stats)]
    saturated = [n for n in layers if any(r["layers"].get(n, {}).get("saturated") is not None for r in stats)]
    if not dead and not saturated:
        raise ValueError("stats.jsonl has no ReLU-family, tanh or sigmoid layer: nothing can die or saturate")
    panels = [(names, key) for names, key in ((dead, "dead"), (saturated, "saturated")) if names]
    figure, grid = new_figure(len(panels), size=(WIDE[0] if len(panels) == 2 else 8, 4.4))
    figure.suptitle(f"dead and saturated units: {plain(title)}", fontsize=12)
    for axes, (names, key) in zip(grid, panels):
        for color, name in zip(depth_colors(len(layers)), layers):
            if name in names:
                steps, values = series(stats, "layers", name, key)
                axes.plot(steps, values, color=color, linewidth=1.6, marker="." if len(steps) < 30 else None,
                          label=plain(name))
        if key == "dead":
            axes.axhline(DEAD_SHARE, color=GAP_COLOR, linestyle="--", linewidth=1.3, label="40%: the seed's alarm")
            axes.set_title("share of units never active (ReLU family): seed §5 warns of 40%", fontsize=9)
        else:
            axes.set_title("share of saturated outputs (tanh, sigmoid): they 'kill gradients' (seed §5)", fontsize=9)
        axes.set(xlabel="step", ylim=(-0.02, 1.02))
        axes.yaxis.set_major_formatter(PercentFormatter(1, decimals=0))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        depth_key(figure, axes, names, location="upper left")
    return figure


def filters_figure(weight: np.ndarray, name: str, title: str) -> Figure:
    """The first conv layer's filters, `weight` (out, in, kH, kW), each min-max normalized on its own,
    as a grid: RGB with 3 input channels, gray otherwise (the first input channel when in > 1)."""
    out, inputs, height, width = weight.shape
    tiles = weight.transpose(0, 2, 3, 1) if inputs == 3 else weight[:, :1].transpose(0, 2, 3, 1).repeat(3, axis=3)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1), 0.5)
    columns = math.ceil(math.sqrt(out))
    rows = math.ceil(out / columns)
    gap = max(1, height // 4)
    mosaic = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, 3))  # white between tiles
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        mosaic[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = tile
    # sized to the mosaic: sixteen 3x3 filters get a small picture, 64 bigger ones up to the old 7 inches
    side = float(np.clip(2.5 + 0.06 * max(mosaic.shape[:2]), 4.8, 7))
    figure, (axes,) = new_figure(size=(side, side + 0.4))
    figure.suptitle(f"first-layer filters: {plain(title)}", fontsize=12)
    axes.imshow(mosaic, interpolation="nearest")
    channels = "RGB" if inputs == 3 else ("gray" if inputs == 1 else f"input channel 1 of {inputs}, gray")
    axes.set_title(f"{plain(name)}: {out} filters {height}×{width}, {channels}, each min-max scaled\n"
                   "smooth, structured filters are healthy; noisy ones: regularization may be too weak",
                   fontsize=9, color="dimgray")
    axes.set_axis_off()
    return figure


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str) -> Figure:
    """The test confusion matrix, rows (true classes) normalized to shares, cells annotated."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.full_like(counts, math.nan), where=totals > 0)
    k = len(counts)
    side = float(np.clip(2.8 + 0.55 * k, 6, 14))
    figure, (axes,) = new_figure(size=(side + 1.2, side))
    figure.suptitle(f"test confusion: {plain(title)}", fontsize=12)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [plain(c if len(str(c)) <= 18 else str(c)[:17] + "…") for c in classes]
    axes.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=9)
    axes.set_yticks(range(k), names, fontsize=9)
    axes.set(xlabel="predicted class", ylabel="true class")
    axes.set_title("% of each true class (row) given each prediction; off the diagonal: confusions; "
                   "blank: no image", fontsize=9, color="dimgray")
    if k <= 20:
        for (i, j), share in np.ndenumerate(shares):
            if np.isfinite(share) and counts[i, j] > 0:  # a cell with images is never "0": under 1% says "<1"
                axes.text(j, i, f"{100 * share:.0f}" if share >= 0.005 else "<1", ha="center", va="center",
                          fontsize=8 if k > 10 else 9, color="white" if share > 0.55 else "black")
    figure.colorbar(image, ax=axes, shrink=0.8, format=PercentFormatter(1, decimals=0))
    return figure


def per_class_figure(recalls: list[float | None], train_counts: list[int] | None, classes: list[str],
                     title: str, balanced: float | None = None) -> Figure:
    """Test recall per class as bars, ordered by training images (most first) when the counts are known,
    each bar labelled with its count: what plain accuracy hides on class-imbalanced data."""
    k = len(recalls)
    order = (sorted(range(k), key=lambda c: -train_counts[c]) if train_counts and len(train_counts) == k
             else list(range(k)))
    values = [100 * recalls[c] if recalls[c] is not None else math.nan for c in order]
    figure, (axes,) = new_figure(size=(float(np.clip(3 + 0.5 * k, 7, 16)), 4.6))
    figure.suptitle(f"test recall per class: {plain(title)}", fontsize=12)
    axes.set_title("ordered by training images (the count above each bar); bars that fall: the rare classes pay",
                   fontsize=9, color="dimgray")
    bars = axes.bar(range(k), values, color=TRAIN_COLOR)
    if train_counts and len(train_counts) == k:
        for bar, c in zip(bars, order):
            axes.text(bar.get_x() + bar.get_width() / 2, min(bar.get_height(), 100) + 1, f"{train_counts[c]}",
                      ha="center", va="bottom", fontsize=8)
    if balanced is not None:
        axes.axhline(100 * balanced, color=VAL_COLOR, linestyle="--", linewidth=1.2,
                     label=f"balanced accuracy {100 * balanced:.1f}%")
        axes.legend(fontsize=9, loc="upper right")
    names = [plain(classes[c] if len(str(classes[c])) <= 18 else str(classes[c])[:17] + "…") for c in order]
    axes.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=9)
    axes.set(ylabel="recall", ylim=(0, 110))
    axes.yaxis.set_major_formatter(PercentFormatter(100))
    axes.grid(alpha=0.3, axis="y")
    return figure


def misclassified_figure(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                         confidence: np.ndarray, classes: list[str], title: str, limit: int = 32) -> Figure:
    """The most confident test mistakes, `images` (K, C, H, W) uint8, each titled "true → predicted (p)"."""
    order = np.argsort(-np.asarray(confidence, dtype=float), kind="stable")[:limit]
    columns = min(8, max(len(order), 1))
    rows = max(1, math.ceil(len(order) / columns))
    figure = Figure(figsize=(WIDE[0], 0.8 + 1.65 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"most confident test mistakes: {plain(title)}  (true → predicted (confidence))", fontsize=12)

    def name(index) -> str:
        text = str(classes[int(index)]) if 0 <= int(index) < len(classes) else str(int(index))
        return plain(text if len(text) <= 11 else text[:10] + "…")

    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, i in zip(grid, order):
        image = np.asarray(images[i])
        if image.shape[0] == 3:
            axes.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        else:
            axes.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes.set_title(f"{name(labels[i])} → {name(predicted[i])}\n({float(confidence[i]):.2f})",
                       fontsize=8, color="darkred")
    for axes in grid:
        axes.set_axis_off()
    return figure
