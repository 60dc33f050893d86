"""What every training study shares: a named grid of configs x seeds through `fit`, the numbers
collected from each run, means ± std over seeds, and the files a study leaves behind.

A study is a list of `(label, overrides)` and a per-budget `Budget`; `run_grid` trains each label
once per seed into `out_dir/runs/<label>-seed<k>`, and `write_results` writes

- `results.md`: the study's table (mean ± std over seeds, the paper's numbers beside ours) and the
  exact command that regenerates it;
- `results.json`: every run's numbers and the aggregates;
- `configs/<label>.yaml`: the resolved config that made each row (first seed; the others differ
  in `train.seed` only).

Budgets: smoke = seconds, for CI (sklearn digits, a tiny subset, one epoch, tiny width); small = a
whole study with 3 seeds in about 8 minutes on a quiet 2-core CPU and under 15 on a busy one
(Fashion-MNIST, subsets or all of it; docs/results.md has the measured times); full = meant for a
GPU (the whole training set, more epochs, wider nets).
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnntricks import config as config_module
from cnntricks.experiments import check_budget
from cnntricks.rundir import read_history, split_history


@dataclass(frozen=True)
class Budget:
    source: str  # data.source when --data is not given
    subset: int | None  # training images kept (stratified); None = all
    epochs: int
    width: int  # model.width
    # train.threads; None = torch's default (all cores: the GPU machine). One thread on the 2-core CPU:
    # with anything else running, two OpenMP threads wait on each other and a run took 3-4x longer
    # (measured on the mlp, vgg and fastnet of the studies, same results); on a quiet machine the
    # second thread gains little on nets this small
    threads: int | None = 1
    extra: tuple[str, ...] = ()  # further overrides for every run of the study at this budget


@dataclass
class RunResult:
    label: str
    seed: int
    run_dir: Path
    seconds: float
    diverged: bool = False
    summary: dict = field(default_factory=dict)
    batch_loss: list[float] = field(default_factory=list)  # per logged step; NaN where not finite
    epochs: list[dict] = field(default_factory=list)  # the epoch records of history.jsonl

    @property
    def test_error(self) -> float:
        """Test error in percent (NaN when the run diverged)."""
        acc = self.summary.get("test_acc")
        return math.nan if acc is None else 100 * (1 - acc)

    @property
    def train_error(self) -> float:
        acc = self.summary.get("train_acc")
        return math.nan if acc is None else 100 * (1 - acc)

    def first_loss(self) -> float:
        """The first finite per-batch loss (NaN when none): where a figure's y axis is scaled from."""
        return next((v for v in self.batch_loss if math.isfinite(v)), math.nan)

    def final_loss(self, share: float = 0.1) -> float:
        """Mean per-batch loss over the last `share` of the logged steps (NaN when diverged)."""
        losses = np.asarray(self.batch_loss, dtype=float)
        if self.diverged or len(losses) == 0:
            return math.nan
        return float(np.nanmean(losses[-max(1, int(share * len(losses))):]))

    def to_dict(self) -> dict:
        keep = ("test_acc", "train_acc", "val_acc", "best_val_acc", "train_seconds", "steps", "epochs",
                "stop_reason")
        return {"label": self.label, "seed": self.seed, "run_dir": str(self.run_dir), "seconds": self.seconds,
                "diverged": self.diverged, "test_error": _number(self.test_error),
                "train_error": _number(self.train_error), "final_loss": _number(self.final_loss()),
                "summary": {key: self.summary.get(key) for key in keep}, "epoch_records": self.epochs,
                "batch_loss": [_number(v) for v in self.batch_loss]}


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def data_overrides(data: str) -> list[str]:
    """`--data SOURCE` or `--data SOURCE:ROOT` (image-folder:photos/, npz:arrays.npz) as overrides."""
    source, _, root = data.partition(":")
    return [f"data.source={source}", *([f"data.root={root}"] if root else [])]


def budget_overrides(budget: Budget, data: str | None) -> list[str]:
    """The overrides every run of a study gets at `budget`: data, size, threads, quiet monitoring."""
    overrides = [*data_overrides(data or budget.source), f"train.epochs={budget.epochs}",
                 f"model.width={budget.width}"]
    if budget.threads is not None:
        overrides.append(f"train.threads={budget.threads}")
    if budget.subset is not None:
        overrides.append(f"data.subset={budget.subset}")
    return overrides + list(budget.extra)


def command(name: str, *, budget: str, seed: int, seeds: int, data: str | None) -> str:
    """The command line that regenerates a study's results."""
    line = f"cnntricks experiment {name} --budget {budget} --seeds {seeds}"
    line += f" --seed {seed}" if seed else ""
    return line + (f" --data {data}" if data else "")


def resolve_grid(grid: list[tuple[str, list[str]]], common: list[str]) -> dict[str, config_module.Config]:
    """{label: Config} for each grid entry; a bad override fails here, before any training."""
    labels = [label for label, _ in grid]
    if len(set(labels)) != len(labels):
        raise ValueError(f"grid labels must be unique, got {labels}")
    return {label: config_module.load(None, common + overrides) for label, overrides in grid}


def train_one(cfg: config_module.Config, label: str, seed: int, run_dir: Path) -> RunResult:
    """One run of `cfg` with train.seed=`seed`; a diverged run is recorded, not raised."""
    from cnntricks.nn.models import ImageSizeWarning
    from cnntricks.session import train  # training pulls in torch and the data
    from cnntricks.train.loop import TrainingDiverged
    config_module.set_value(cfg, "train.seed", seed)
    if run_dir.exists():  # a study re-run into the same folder replaces its runs
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    diverged, summary = False, {}
    try:
        with warnings.catch_warnings():  # the study chose 28x28 on purpose: no power-of-2 warning per run
            warnings.simplefilter("ignore", ImageSizeWarning)
            summary = train(cfg, run_dir, progress=False, report=False)
    except TrainingDiverged:
        diverged = True
    result = RunResult(label, seed, run_dir, time.perf_counter() - started, diverged, summary)
    batches, epochs = split_history(read_history(run_dir))
    result.batch_loss = [math.nan if b.get("loss") is None else float(b["loss"]) for b in batches]
    result.epochs = epochs
    return result


def run_grid(name: str, grid: list[tuple[str, list[str]]], out_dir: Path, *, seed: int, seeds: int,
             budget: Budget, data: str | None, log=print) -> dict[str, list[RunResult]]:
    """Train every (label, overrides) of `grid` once per seed; {label: [RunResult per seed]}.

    Configs are written to `out_dir/configs/<label>.yaml` first. After the first run the total
    time is estimated from it and printed (the configs of a grid differ, so this is a rough guide).
    """
    out_dir = Path(out_dir)
    configs = resolve_grid(grid, budget_overrides(budget, data) + ["train.monitor=every:20"])
    (out_dir / "configs").mkdir(parents=True, exist_ok=True)
    for label, cfg in configs.items():
        config_module.set_value(cfg, "train.seed", seed)
        config_module.save(cfg, out_dir / "configs" / f"{label}.yaml")
    total = len(configs) * seeds
    results: dict[str, list[RunResult]] = {label: [] for label in configs}
    done = 0
    for s in range(seed, seed + seeds):
        for label, cfg in configs.items():
            result = train_one(config_module.from_dict(cfg.to_dict()), label, s, out_dir / "runs" / f"{label}-seed{s}")
            results[label].append(result)
            done += 1
            if done == 1:
                log(f"{name}: first run took {result.seconds:.1f} s; {total} runs ({len(configs)} configs x "
                    f"{seeds} seeds) will take about {total * result.seconds / 60:.1f} min")
            log(f"{name}: [{done}/{total}] {label} seed {s}: test error {result.test_error:.2f}%"
                f"{' (diverged)' if result.diverged else ''}, {result.seconds:.1f} s")
    return results


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over the finite values (NaN, NaN when none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def format_mean_std(values: list[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    missing = sum(1 for v in values if v is None or not math.isfinite(v))
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"
    return text + (f" ({missing} of {len(values)} diverged)" if missing else "")


def error_rows(results: dict[str, list["RunResult"]], labelled: list[tuple[str, float | None]],
               file_label) -> tuple[list[list], list[tuple[str, list[float], float | None]]]:
    """For studies beside a paper's error column: table rows [label, train error, test error,
    paper] and the bars of `draw_error_bars`, one per (label, paper error or None); `file_label`
    maps a label to its key in `results` (its run folders' name)."""
    rows, bars = [], []
    for label, paper in labelled:
        runs = results[file_label(label)]
        test = [r.test_error for r in runs]
        rows.append([label, format_mean_std([r.train_error for r in runs]), format_mean_std(test),
                     f"{paper:.2f}" if paper is not None else "—"])
        bars.append((label, test, paper))
    return rows, bars


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, *, name: str, title: str, notes: list[str], header: list[str],
                  rows: list[list], results: dict[str, list[RunResult]], budget: str, seed: int, seeds: int,
                  data: str | None, figures: dict[str, Path], extra: dict | None = None) -> dict:
    """results.md and results.json; returns the experiment's return value (files, summary, numbers)."""
    out_dir = Path(out_dir)
    regenerate = command(name, budget=budget, seed=seed, seeds=seeds, data=data)
    markdown = [f"# {title}", "", f"Regenerate: `{regenerate}`", "",
                f"Budget {budget}, seeds {seed}..{seed + seeds - 1}; mean ± std over seeds. "
                f"Configs: `configs/<label>.yaml`; runs: `runs/<label>-seed<k>/`.", ""]
    markdown += [f"- {note}" for note in notes] + [""]
    markdown += [markdown_table(header, rows)]
    markdown += [f"![{what}]({Path(path).name})" for what, path in figures.items()]
    (out_dir / "results.md").write_text("\n".join(markdown) + "\n")
    numbers = {"name": name, "budget": budget, "seed": seed, "seeds": seeds, "data": data, "command": regenerate,
               "header": header, "rows": rows, **(extra or {}),
               "runs": {label: [r.to_dict() for r in runs] for label, runs in results.items()}}
    (out_dir / "results.json").write_text(json.dumps(numbers, indent=1))
    return {"files": {"table": out_dir / "results.md", "numbers": out_dir / "results.json",
                      "configs": out_dir / "configs", **figures},
            "summary": {"header": header, "rows": rows}, "results": numbers}


def prepare(out_dir: Path, budget: str, budgets: dict[str, Budget]) -> tuple[Path, Budget]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, budgets[check_budget(budget)]


def smoothed(values: list[float], window: int) -> np.ndarray:
    """Running mean over `window` steps (NaNs skipped), the same length as `values`."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return x
    window = max(1, min(window, len(x)))
    finite = np.where(np.isfinite(x), x, 0.0)
    counts = np.convolve(np.isfinite(x).astype(float), np.ones(window), mode="full")[:len(x)]
    sums = np.convolve(finite, np.ones(window), mode="full")[:len(x)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def draw_loss_curves(results: dict[str, list[RunResult]], path: Path, title: str,
                     labels: list[str] | None = None, window: int = 5, log_scale: bool = False,
                     top: float | None = None) -> Path:
    """Per-batch loss of the first seed of each label (thin), smoothed (thick), on one axes.

    `top` caps the y axis (from 0), so that a run that explodes leaves the chart at the top instead
    of squeezing the others into a flat line (a loss of 1e24 on a log axis did that)."""
    from cnntricks.report.figures import new_figure, save_png
    figure, (axes,) = new_figure(1, (8, 4.5))
    for index, label in enumerate(labels or list(results)):
        run = results[label][0]
        losses = np.asarray(run.batch_loss, dtype=float)
        steps = np.arange(1, len(losses) + 1)
        colour = f"C{index % 10}"
        axes.plot(steps, losses, color=colour, alpha=0.25, linewidth=0.8)
        axes.plot(steps, smoothed(run.batch_loss, window), color=colour, linewidth=1.8,
                  label=label + (" (diverged)" if run.diverged else ""))
    axes.set_xlabel("step")
    axes.set_ylabel("training loss (per batch)")
    if log_scale:
        axes.set_yscale("log")
    if top is not None and math.isfinite(top):
        axes.set_ylim(0, top)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    return save_png(figure, path)


def draw_error_bars(rows: list[tuple[str, list[float], float | None]], path: Path, title: str,
                    paper_label: str = "paper") -> Path:
    """Test error per label: ours (mean, std over seeds) as bars, the paper's value as a marker."""
    from cnntricks.report.figures import new_figure, save_png
    figure, (axes,) = new_figure(1, (max(5.0, 0.9 * len(rows) + 2), 4))
    positions = np.arange(len(rows))
    means = [mean_std(values)[0] for _, values, _ in rows]
    stds = [mean_std(values)[1] for _, values, _ in rows]
    axes.bar(positions, means, yerr=stds, color="tab:blue", capsize=3, label="ours (test error)")
    paper = [(i, value) for i, (_, _, value) in enumerate(rows) if value is not None]
    if paper:
        axes.scatter(*zip(*paper), color="tab:red", marker="D", zorder=3, label=paper_label)
    axes.set_xticks(positions, [label for label, _, _ in rows], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("test error (%)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    return save_png(figure, path)
