"""Which initializations let a plain deep net train, and how fast (seed §3; He et al. 2015,
"Delving Deep into Rectifiers", Fig. 3).

Plain fully connected ReLU nets without normalization (`model.name=mlp`, which has none) of 10,
22 and 30 layers start from all zeros, 0.001·N(0,1), calibrated N(0, 1/n) and He N(0, 2/n). A run
*trains* when its final loss is below ln C (chance, C classes) by MARGIN nats; *how fast* is the
step at which the smoothed loss first gets there. He et al. (ImageNet, conv nets): at 22 layers
both Xavier-style and their init converge, theirs earlier; at 30 layers only theirs converges.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, RunResult, format_mean_std, prepare, run_grid, smoothed,
                                          stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=300, epochs=1, width=4, extra=("optim.batch_size=32",)),
           # 36 runs; 780 steps of batch 64 (a 30-layer run took 12 s on a busy CPU)
           "small": Budget("fashion-mnist", subset=10000, epochs=5, width=16, extra=("optim.batch_size=64",)),
           "full": Budget("fashion-mnist", subset=None, epochs=10, width=64, threads=None)}

DEPTHS = (10, 22, 30)
SCHEMES = ("zeros", "small_normal", "calibrated", "he_normal")  # seed §3's, in its order, then He
MARGIN = 0.25  # nats below ln C that count as "trains": clearly better than guessing
WINDOW = 10  # steps in the running mean that decides when the loss crossed the threshold
# He et al. 2015, §2.2 and Fig. 2-3 (their "Xavier" is our calibrated).
PAPER = {("calibrated", 22): "converges, later", ("he_normal", 22): "converges, earlier",
         ("calibrated", 30): "stalls", ("he_normal", 30): "converges"}
COMMON = ["model.name=mlp", "model.activation=relu", "optim.lr=0.01", "schedule.name=constant",
          "schedule.warmup_epochs=0", "optim.weight_decay=0", "optim.label_smoothing=0", "augment.policy=none",
          "train.tta=false"]


def label_of(scheme: str, depth: int) -> str:
    return f"{scheme}-{depth}"


def steps_to(losses: list[float], threshold: float) -> int | None:
    """The first step at which the running mean of the loss is below `threshold` (None: never)."""
    below = np.flatnonzero(smoothed(losses, WINDOW) < threshold)
    return int(below[0]) + 1 if len(below) else None


def verdict(run: RunResult, threshold: float) -> tuple[bool, int | None]:
    """(trains, steps to the threshold) of one run."""
    final = run.final_loss()
    return (math.isfinite(final) and final < threshold), steps_to(run.batch_loss, threshold)


def draw_curves(results: dict[str, list[RunResult]], path: Path, chance: float, threshold: float) -> Path:
    """One panel per depth: each scheme's smoothed loss (first seed), chance and threshold lines."""
    from cnntricks.report.figures import new_figure, save_png
    figure, panels = new_figure(len(DEPTHS), (4.2 * len(DEPTHS), 3.8))
    for axes, depth in zip(panels, DEPTHS):
        for index, scheme in enumerate(SCHEMES):
            run = results[label_of(scheme, depth)][0]
            axes.plot(np.arange(1, len(run.batch_loss) + 1), smoothed(run.batch_loss, WINDOW), color=f"C{index}",
                      label=scheme + (" (diverged)" if run.diverged else ""))
        axes.axhline(chance, color="gray", linestyle="--", linewidth=1, label="ln C (chance)")
        axes.axhline(threshold, color="gray", linestyle=":", linewidth=1, label=f"ln C − {MARGIN}")
        axes.set_title(f"{depth} layers, no normalization", fontsize=10)
        axes.set_xlabel("step")
    panels[0].set_ylabel(f"training loss (mean of {WINDOW} steps)")
    panels[0].legend(fontsize=7)
    return save_png(figure, path)


def grid(size: Budget) -> list[tuple[str, list[str]]]:
    """(label, overrides) of each config; the same at every budget (the budget adds its own)."""
    return [(label_of(scheme, depth), COMMON + [f"model.init={scheme}", f"model.depth={depth}"])
            for depth in DEPTHS for scheme in SCHEMES]


@EXPERIMENTS.register("init")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Zeros, 0.001·N(0,1), calibrated and He init on plain 10/22/30-layer nets: which train, how fast (seed §3)."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("init", grid(size), out_dir, seed=seed, seeds=seeds, budget=size, data=data, log=stderr_log)
    classes = len(next(iter(results.values()))[0].summary.get("classes") or range(10))
    chance = math.log(classes)
    threshold = chance - MARGIN
    rows, verdicts = [], {}
    for depth in DEPTHS:
        for scheme in SCHEMES:
            label = label_of(scheme, depth)
            runs = results[label]
            judged = [verdict(r, threshold) for r in runs]
            reached = [steps for _, steps in judged if steps is not None]
            verdicts[label] = [{"trains": trains, "steps_to_threshold": steps} for trains, steps in judged]
            rows.append([depth, scheme, f"{sum(t for t, _ in judged)}/{len(runs)}",
                         format_mean_std([r.final_loss() for r in runs], 3),
                         f"{np.mean(reached):.0f}" + (f" ({len(reached)}/{len(runs)})" if len(reached) < len(runs)
                                                      else "") if reached else "never",
                         format_mean_std([r.test_error for r in runs]), PAPER.get((scheme, depth), "—")])
    header = ["layers", "init", "trains", "final loss", f"steps to loss < ln C − {MARGIN}", "test error %",
              "He et al. 2015 (ImageNet)"]
    figures = {"loss curves": draw_curves(results, out_dir / "init.png", chance, threshold)}
    notes = [f"Model: `mlp` with ReLU and no normalization, {8 * size.width} units per layer; SGD lr 0.01 "
             "constant, no warm-up, no weight decay, no label smoothing; the classifier layer always starts at "
             "0.001·N(0,1).",
             f"Trains: final loss (mean of the last 10 % of steps) below ln C − {MARGIN} = {threshold:.3f} "
             f"(C = {classes}); steps: first step where the {WINDOW}-step mean is below that.",
             "He et al. used conv nets on ImageNet (22 and 30 layers); calibrated N(0, 1/n) is their 'Xavier'.",
             f"Data: {data or size.source}, {size.subset or 'all'} training images, {size.epochs} epoch(s)."]
    return write_results(out_dir, name="init", title="Initialization of plain deep nets (seed §3, He et al. 2015)",
                         notes=notes, header=header, rows=rows, results=results, budget=budget, seed=seed,
                         seeds=seeds, data=data, figures=figures,
                         extra={"chance_loss": chance, "threshold": threshold, "verdicts": verdicts})
