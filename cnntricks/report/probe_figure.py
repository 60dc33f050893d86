"""The linear-probe curve (`cnntricks probe`): accuracy of a linear classifier on each stage's
features, bottom to top (Yosinski et al. 2014's figure: where features stop being general)."""
from __future__ import annotations

from pathlib import Path

from cnntricks.report.figures import new_figure, save_png


def draw_probe(rows: list, path: str | Path, title: str) -> Path:
    """rows: transfer.StageProbe, bottom first."""
    figure, (axes,) = new_figure()
    stages = [row.stage for row in rows]
    axes.plot(stages, [100 * row.test_acc for row in rows], "o-", label="test")
    axes.plot(stages, [100 * row.train_acc for row in rows], "o--", alpha=0.6, label="train (probe's fit)")
    axes.set_xticks(stages, [f"stage {row.stage}\n{row.features} features" for row in rows], fontsize=8)
    axes.set(ylabel="linear-probe accuracy (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, Path(path))


def draw_probe_curves(curves: dict[str, list], path: str | Path, title: str) -> Path:
    """Test accuracy of the probes per stage, one line per data set ({label: StageProbe rows, bottom first})."""
    figure, (axes,) = new_figure()
    for label, rows in curves.items():
        axes.plot([row.stage for row in rows], [100 * row.test_acc for row in rows], "o-", label=label)
    stages = sorted({row.stage for rows in curves.values() for row in rows})
    axes.set_xticks(stages, [f"stage {stage}" for stage in stages], fontsize=8)
    axes.set(ylabel="linear-probe test accuracy (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, Path(path))
