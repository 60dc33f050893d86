"""The linear-probe curve (`cnntricks probe`): accuracy of a linear classifier on each stage's
features, bottom to top (Yosinski et al. 2014's figure: where features stop being general)."""
from __future__ import annotations

from pathlib import Path

from cnntricks.report.figures import new_figure, save_png


def draw_probe(rows: list, path: str | Path, title: str) -> Path:
    """rows: transfer.StageProbe, bottom first: test accuracy, and the probe's own fit."""
    return _draw({"test": (rows, "test_acc"), "train (probe's fit)": (rows, "train_acc")}, path, title,
                 "linear-probe accuracy (%)", ticks=[f"stage {row.stage}\n{row.features} features" for row in rows])


def draw_probe_curves(curves: dict[str, list], path: str | Path, title: str) -> Path:
    """Test accuracy of the probes per stage, one line per data set ({label: StageProbe rows, bottom first})."""
    return _draw({label: (rows, "test_acc") for label, rows in curves.items()}, path, title,
                 "linear-probe test accuracy (%)")


def _draw(curves: dict[str, tuple[list, str]], path: str | Path, title: str, ylabel: str,
          ticks: list[str] | None = None) -> Path:
    """{label: (rows, "test_acc" or "train_acc")}: a line each; the probe's fit on its own images dashed."""
    figure, (axes,) = new_figure()
    for label, (rows, field) in curves.items():
        fit = field == "train_acc"
        axes.plot([row.stage for row in rows], [100 * getattr(row, field) for row in rows], "o--" if fit else "o-",
                  alpha=0.6 if fit else 1.0, label=label)
    stages = sorted({row.stage for rows, _ in curves.values() for row in rows})
    axes.set_xticks(stages, ticks or [f"stage {stage}" for stage in stages], fontsize=8)
    axes.set(ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, Path(path))
