"""Class imbalance (seed, Misc): long-tailed Fashion-MNIST at ρ = 10 and 100, the seed's three remedies
and the field's, balanced accuracy and few-shot recall, beside the long-tail papers' CIFAR-10-LT.

The training split is cut to a long tail with `data.imbalance=ρ` (exponential profile, as the papers
build CIFAR-10-LT) from a stratified subset; validation and test stay balanced, so test accuracy is
balanced accuracy. Every remedy trains with the same recipe; the post-hoc ones (`cnntricks
rebalance`) correct the plain cross-entropy runs without training; "balanced" trains on a balanced
subset of the same size as the ρ = 100 set. The doctor reads every run for its `class_imbalance`
finding. Papers (CIFAR-10-LT, ResNet-32, balanced test top-1 %): cross-entropy 70.4 (ρ = 100) and
86.4 (ρ = 10), LDAM-DRW 77.0 and 88.2 (Cao et al. 2019); logit-adjusted loss 77.9 (ρ = 100,
Menon et al. 2021).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.common import (Budget, data_overrides, format_mean_std, mean_std, prepare, run_grid,
                                          stderr_log, write_results)

BUDGETS = {"smoke": Budget("digits", subset=None, epochs=2, width=4),  # two-stage needs an epoch a stage
           # 1,000 images a class before the tail (ρ = 100: 1,000 down to 10, 2,298 images; ρ = 10: 3,871):
           # few-shot classes (under 20 images) exist at ρ = 100, and a run takes seconds
           "small": Budget("fashion-mnist", subset=10000, epochs=10, width=16),
           "full": Budget("fashion-mnist", subset=None, epochs=30, width=32, threads=None)}
RATIOS = (10, 100)
# (label, overrides, the seed's remedy?)
REMEDIES = [("cross-entropy", [], False),
            ("oversample", ["imbalance.sampler=oversample"], True),
            ("undersample", ["imbalance.sampler=undersample"], True),
            ("minority crops x4", ["imbalance.minority_crops=4", "augment.policy=standard"], True),
            ("two-stage", ["imbalance.two_stage=true"], True),
            ("class-balanced sampler", ["imbalance.sampler=class_balanced"], False),
            ("sqrt sampler", ["imbalance.sampler=sqrt"], False),
            ("progressive sampler", ["imbalance.sampler=progressive"], False),
            ("class-balanced loss", ["imbalance.loss=class_balanced"], False),
            ("focal loss", ["imbalance.loss=focal"], False),
            ("LDAM-DRW", ["imbalance.loss=ldam_drw"], False),
            ("logit-adjusted loss", ["imbalance.loss=logit_adjusted"], False)]
POST_HOC = [("post-hoc logit adjustment", "logit_adjust"), ("post-hoc τ-normalization", "tau_norm"),
            ("classifier re-training (cRT)", "crt")]
PAPERS = {("cross-entropy", 100): 70.4, ("cross-entropy", 10): 86.4, ("LDAM-DRW", 100): 77.0,
          ("LDAM-DRW", 10): 88.2, ("logit-adjusted loss", 100): 77.9}


def key(label: str, ratio: int | None) -> str:
    name = label.replace(" ", "-").replace("(", "").replace(")", "").replace("τ", "tau")
    return f"{name}-rho{ratio}" if ratio else name


def balanced_size(size: Budget, data: str | None, ratio: float) -> int:
    """Training images of the long-tailed set at `ratio`: what the balanced comparison keeps."""
    from cnntricks import config as config_module
    from cnntricks.data import load_splits
    from cnntricks.data.longtail import long_tail_counts
    cfg = config_module.load(None, [*data_overrides(data or size.source)]
                             + ([f"data.subset={size.subset}"] if size.subset else []))
    counts = load_splits(cfg.data, 0).train.class_counts().tolist()
    return sum(long_tail_counts(counts, ratio))


def grid(size: Budget, data: str | None) -> list[tuple[str, list[str]]]:
    runs = [(key(label, ratio), [f"data.imbalance={ratio}", *overrides])
            for ratio in RATIOS for label, overrides, _ in REMEDIES]
    return runs + [(key("balanced", None), [f"data.subset={balanced_size(size, data, max(RATIOS))}"])]


def figures_of(summary: dict) -> tuple[float, float]:
    """(balanced accuracy %, few-shot recall %) of a summary (NaN where missing)."""
    balanced = summary.get("test_balanced_acc")
    few = (summary.get("test_shot_acc") or {}).get("few")
    return (100 * balanced if balanced is not None else math.nan, 100 * few if few is not None else math.nan)


@EXPERIMENTS.register("imbalance")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Long-tailed data (ρ = 10, 100): the seed's three remedies and the field's, balanced accuracy (seed, Misc)."""
    from cnntricks.doctor import diagnose
    from cnntricks.rundir import read_json
    from cnntricks.train.rebalance import rebalance
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    results = run_grid("imbalance", grid(size, data), out_dir, seed=seed, seeds=seeds, budget=size, data=data,
                       log=stderr_log)
    scores: dict[str, list[tuple[float, float]]] = {name: [figures_of(r.summary) for r in runs]
                                                    for name, runs in results.items()}
    for ratio in RATIOS:  # the post-hoc corrections of each cross-entropy run: no training
        for label, method in POST_HOC:
            scores[key(label, ratio)] = []
            for run_result in results[key("cross-entropy", ratio)]:
                target = run_result.run_dir.with_name(f"{run_result.run_dir.name}-{method}")
                if target.exists():  # a study re-run into the same folder replaces its runs
                    shutil.rmtree(target)
                record = rebalance(run_result.run_dir, target, method, say=lambda message: None)
                scores[key(label, ratio)].append(figures_of(read_json(target / "summary.json") or {}))
                stderr_log(f"imbalance: {label} of {run_result.run_dir.name}: balanced accuracy "
                           f"{100 * record['test_after']['balanced_acc']:.2f}%")
    found = {name: [any(f.id == "class_imbalance" and f.severity in ("warning", "error") for f in diagnose(r.run_dir))
                    for r in runs] for name, runs in results.items()}
    noticed = {name: [any(f.id == "class_imbalance" for f in diagnose(r.run_dir)) for r in runs]
               for name, runs in results.items()}

    labels = [(label, seed_remedy) for label, _, seed_remedy in REMEDIES] + [(label, False) for label, _ in POST_HOC]
    header = ["remedy", *[f"ρ = {ratio}: balanced acc. %" for ratio in RATIOS], f"ρ = {max(RATIOS)}: few-shot recall %",
              "papers (CIFAR-10-LT, ρ = 100 / 10)"]
    rows = []
    for label, seed_remedy in labels:
        cells = [format_mean_std([s[0] for s in scores[key(label, ratio)]]) for ratio in RATIOS]
        cells.append(format_mean_std([s[1] for s in scores[key(label, max(RATIOS))]]))
        paper = " / ".join(f"{PAPERS[label, r]:.1f}" if (label, r) in PAPERS else "—" for r in (100, 10))
        rows.append([label + (" (seed)" if seed_remedy else ""), *cells, paper])
    balanced = scores[key("balanced", None)]
    rows.append([f"balanced set of the ρ = {max(RATIOS)} size", "—", format_mean_std([s[0] for s in balanced]), "—",
                 "—"])
    plain = {ratio: mean_std([s[0] for s in scores[key("cross-entropy", ratio)]])[0] for ratio in RATIOS}
    best = {ratio: max(((label, mean_std([s[0] for s in scores[key(label, ratio)]])[0]) for label, _ in labels),
                       key=lambda item: -math.inf if math.isnan(item[1]) else item[1]) for ratio in RATIOS}
    long_tailed = [name for name in found if name != key("balanced", None)]
    detection = {"long_tailed_runs": sum(len(found[n]) for n in long_tailed),
                 "warning_on_long_tailed": sum(sum(found[n]) for n in long_tailed),
                 "any_on_long_tailed": sum(sum(noticed[n]) for n in long_tailed),
                 "on_balanced": sum(noticed[key("balanced", None)])}
    notes = [f"Data: {data or size.source}, {size.subset or 'all'} training images (stratified) before the tail, "
             f"{size.epochs} epochs, `fastnet` width {size.width}; validation and test balanced.",
             "Best remedy against cross-entropy: " + "; ".join(
                 f"ρ = {ratio}: {best[ratio][0]} {best[ratio][1]:.2f}% ({best[ratio][1] - plain[ratio]:+.2f})"
                 for ratio in RATIOS) + ".",
             f"The doctor's class_imbalance: a warning in {detection['warning_on_long_tailed']} and any finding in "
             f"{detection['any_on_long_tailed']} of {detection['long_tailed_runs']} long-tailed runs; "
             f"{detection['on_balanced']} of {len(noticed[key('balanced', None)])} balanced runs.",
             "Papers: Cao et al. 2019 (ResNet-32, CIFAR-10-LT) and Menon et al. 2021; our data and model are "
             "smaller, so compare the gains over cross-entropy, not the accuracies."]
    figure = draw_remedies([label for label, _ in labels], scores, plain, out_dir / "imbalance.png")
    return write_results(out_dir, name="imbalance", title="Class imbalance (seed, Misc)", notes=notes, header=header,
                         rows=rows, results=results, budget=budget, seed=seed, seeds=seeds, data=data,
                         figures={"balanced accuracy by remedy": figure},
                         extra={"scores": scores, "detection": detection,
                                "best": {str(r): {"remedy": best[r][0], "balanced_acc": best[r][1],
                                                  "gain": best[r][1] - plain[r]} for r in RATIOS}})


def draw_remedies(labels: list[str], scores: dict, plain: dict, path: Path) -> Path:
    """Balanced accuracy per remedy at each ρ (mean, std over seeds), cross-entropy's dashed."""
    import numpy as np

    from cnntricks.report.figures import new_figure, save_png
    figure, (axes,) = new_figure(1, (max(8.0, 0.7 * len(labels) + 2), 4.6))
    positions = np.arange(len(labels))
    width = 0.8 / len(RATIOS)
    for index, ratio in enumerate(RATIOS):
        stats = [mean_std([s[0] for s in scores[key(label, ratio)]]) for label in labels]
        axes.bar(positions + (index - (len(RATIOS) - 1) / 2) * width, [m for m, _ in stats], width,
                 yerr=[d for _, d in stats], capsize=2, color=f"C{index}", label=f"ρ = {ratio}")
        axes.axhline(plain[ratio], color=f"C{index}", linestyle="--", linewidth=1)
    axes.set_xticks(positions, labels, rotation=35, ha="right", fontsize=8)
    axes.set_ylabel("test balanced accuracy (%)")
    axes.set_title("Long-tailed training data: balanced accuracy by remedy (dashed: cross-entropy)", fontsize=10)
    axes.legend(fontsize=8)
    return save_png(figure, path)
