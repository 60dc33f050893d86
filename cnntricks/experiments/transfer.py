"""Fine-tuning by the seed's 2x2 table (seed §4), measured: every strategy in every cell.

Seed §4: "the two most important factors are the size of the new data set (small or big), and its
similarity to the original data set". A source model is trained once on part of a real dataset
(Fashion-MNIST classes 0-4: T-shirt, trouser, pullover, dress, coat); then every strategy of
`transfer.strategy` starts from it in four cells:
  similar    Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, ankle boot): the same camera,
             background and kind of object, other classes
  different  letters A-J rendered from the system's fonts (data.source=letters, notMNIST's recipe;
             its test split holds fonts no training image was drawn in)
  small      SMALL_PER_CLASS training images per class; big: BIG_PER_CLASS
and `scratch` (the same network from random weights) is the baseline. The advisor
(transfer.strategy=auto) is asked in each cell and seed, and its pick is scored by the measured
accuracy of that strategy. The per-stage linear probes of the source (Yosinski et al. 2014's
curve) are drawn for the similar and the different data.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cnntricks import config as config_module
from cnntricks.experiments import EXPERIMENTS
from cnntricks.nn.models import ImageSizeWarning
from cnntricks.experiments.common import (Budget, format_mean_std, mean_std, prepare, run_grid, stderr_log,
                                          train_one, write_results)


@dataclasses.dataclass(frozen=True)
class TransferBudget:
    source: str            # the dataset split by class into the source and the similar target
    source_epochs: int
    width: int
    small_per_class: int
    big_per_class: int
    small_epochs: int      # few images: more epochs, smaller batches, so the gradient strategies take steps
    big_epochs: int
    small_batch: int = 32
    threads: int | None = 1
    letters_per_class: int | None = None  # data.subset of the letters source (smoke: few)


BUDGETS = {"smoke": TransferBudget("digits", source_epochs=2, width=8, small_per_class=10, big_per_class=30,
                                   small_epochs=2, big_epochs=1, small_batch=16),
           "small": TransferBudget("fashion-mnist", source_epochs=4, width=16, small_per_class=20,
                                   big_per_class=500, small_epochs=25, big_epochs=6),
           "full": TransferBudget("fashion-mnist", source_epochs=15, width=32, small_per_class=50,
                                  big_per_class=3000, small_epochs=40, big_epochs=15, threads=None)}

# label -> transfer.strategy; the table's rows, in order
STRATEGIES = [("scratch", "scratch"), ("linear@stage0", "linear@stage0"), ("linear@stage1", "linear@stage1"),
              ("linear (top)", "linear"), ("top", "top"), ("all", "all"), ("lp-ft", "lp-ft"),
              ("gradual", "gradual")]
CELLS = [("similar", "small"), ("similar", "big"), ("different", "small"), ("different", "big")]
# seed §4's advice per cell (the strategy that carries it out)
SEED_SAYS = {("similar", "small"): "linear", ("similar", "big"): "top",
             ("different", "small"): "linear@stage", ("different", "big"): "all"}
COMMON = ["model.name=fastnet", "model.depth=3", "augment.policy=flip", "train.tta=false", "doctor.mode=off"]


def file_label(label: str) -> str:
    return label.replace(" (top)", "").replace("@", "-at-")


def study_files(out_dir: Path) -> dict[str, Path]:
    """Where a study keeps its data split by class: {"source": .npz, "similar": .npz}."""
    return {name: Path(out_dir) / "data" / f"{name}.npz" for name in ("source", "similar")}


def common_overrides(budget: TransferBudget) -> list[str]:
    """What every run of the study gets at `budget`: the recipe, the width, the threads."""
    return COMMON + [f"model.width={budget.width}"] + ([f"train.threads={budget.threads}"] if budget.threads else [])


def split_by_class(budget: TransferBudget, out_dir: Path) -> dict[str, Path]:
    """The source data (classes 0-4) and the similar target (classes 5-9) as .npz files."""
    from cnntricks.data.sources import SOURCES
    train, test = SOURCES.get(budget.source)(config_module.DataConfig(source=budget.source), 0)
    files = study_files(out_dir)
    files["source"].parent.mkdir(parents=True, exist_ok=True)
    for name, low in (("source", 0), ("similar", 5)):
        keep = lambda store: ((store.labels >= low) & (store.labels < low + 5)).nonzero().flatten()  # noqa: E731
        tr, te = keep(train), keep(test)
        np.savez(files[name], x=train.images[tr].numpy(), y=(train.labels[tr] - low).numpy(),
                 x_test=test.images[te].numpy(), y_test=(test.labels[te] - low).numpy(),
                 classes=np.array(train.classes[low:low + 5]))
    return files


def cell_overrides(similarity: str, size: str, budget: TransferBudget, files: dict[str, Path]) -> tuple[list[str], int]:
    """(the data and training overrides of a cell, its classes)."""
    per_class = budget.small_per_class if size == "small" else budget.big_per_class
    if similarity == "similar":
        data, classes = ["data.source=npz", f"data.root={files['similar']}"], 5
    else:
        data, classes = ["data.source=letters"], 10
    data.append(f"data.subset={per_class * classes}")
    if size == "small":
        data += [f"train.epochs={budget.small_epochs}", f"optim.batch_size={budget.small_batch}"]
    else:
        data += [f"train.epochs={budget.big_epochs}"]
    return data, classes


def advisor_picks(cfg: config_module.Config, seeds: range) -> list[dict]:
    """The advisor's measurements and choice for `cfg`'s data, per seed (the probes, the table and the race)."""
    from cnntricks.data import load_splits
    from cnntricks.train.race import choose
    picks = []
    for seed in seeds:
        cfg = config_module.from_dict(cfg.to_dict())
        config_module.set_value(cfg, "train.seed", seed)
        with warnings.catch_warnings():  # 28x28 on purpose: no power-of-2 advice per probe
            warnings.simplefilter("ignore", ImageSizeWarning)
            advice = choose(cfg, load_splits(cfg.data, seed), torch.device("cpu"))
        picks.append(advice.to_dict())
    return picks


def stage_probes(cfg: config_module.Config) -> list:
    """The source's linear probe per stage on `cfg`'s data (train -> test)."""
    from cnntricks.data import load_splits
    from cnntricks.transfer.probe import pretrained_model, probe
    splits = load_splits(cfg.data, cfg.train.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageSizeWarning)
        model, preprocess, _ = pretrained_model(cfg, splits, torch.device("cpu"))
    return probe(model, preprocess, splits.train, splits.test, torch.device("cpu"), cfg.train.seed)


def draw_table_figure(accuracy: dict, path: Path) -> Path:
    """Test accuracy per strategy (bars, std as error bars), one panel per cell."""
    from cnntricks.report.figures import new_figure, save_png
    figure, axes = new_figure(4, (15, 4))
    labels = [label for label, _ in STRATEGIES]
    for ax, cell in zip(axes, CELLS):
        means = [mean_std(accuracy[cell][label])[0] for label in labels]
        stds = [mean_std(accuracy[cell][label])[1] for label in labels]
        colours = ["tab:gray" if label == "scratch" else "tab:blue" for label in labels]
        ax.bar(range(len(labels)), means, yerr=stds, color=colours, capsize=2)
        finite = [m for m in means if math.isfinite(m)]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(", ".join(cell), fontsize=10)
        ax.set_ylabel("test accuracy (%)")
    return save_png(figure, path)


@EXPERIMENTS.register("transfer")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Every fine-tuning strategy in the four cells of the seed's table (seed §4), with the advisor's picks."""
    from cnntricks.report.probe_figure import draw_probe_curves
    if data is not None:
        raise config_module.ConfigError("experiment transfer: --data does not apply (the study splits Fashion-MNIST by class "
                         "and renders letters); choose the budget instead")
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    started = time.perf_counter()
    files = split_by_class(size, out_dir)
    common = common_overrides(size)
    source_cfg = config_module.load(None, common + ["data.source=npz", f"data.root={files['source']}",
                                                    f"train.epochs={size.source_epochs}"])
    stderr_log(f"transfer: training the source model on {size.source} classes 0-4 ({size.source_epochs} epochs)")
    source = train_one(source_cfg, "source", seed, out_dir / "source")
    stderr_log(f"transfer: source test accuracy {100 * source.summary['test_acc']:.2f}% in {source.seconds:.0f} s")
    accuracy: dict = {}
    picks: dict = {}
    results: dict = {}
    for cell in CELLS:
        overrides, _ = cell_overrides(*cell, size, files)
        name = "-".join(cell)
        cell_common = common + overrides + [f"model.pretrained={out_dir / 'source'}"]
        grid = [(file_label(label), cell_common + [f"transfer.strategy={strategy}"]) for label, strategy in STRATEGIES]
        cell_budget = Budget(source="npz", subset=None, epochs=size.big_epochs, width=size.width,
                             threads=size.threads)
        found = run_grid(f"transfer {name}", grid, out_dir / name, seed=seed,
                         seeds=seeds, budget=cell_budget, data=None, log=stderr_log)
        results.update({f"{name}/{label}": runs for label, runs in found.items()})
        accuracy[cell] = {label: [100 * (r.summary.get("test_acc") or math.nan) for r in found[file_label(label)]]
                          for label, _ in STRATEGIES}
        auto_cfg = config_module.load(None, cell_common + ["transfer.strategy=auto"])
        picks[cell] = advisor_picks(auto_cfg, range(seed, seed + seeds))
    probes = {similarity: stage_probes(config_module.load(None, common + cell_overrides(similarity, "big", size, files)[0]
                                                          + [f"model.pretrained={out_dir / 'source'}",
                                                             f"train.seed={seed}"]))
              for similarity in ("similar", "different")}
    return summarize(out_dir, budget=budget, size=size, seed=seed, seeds=seeds, accuracy=accuracy, picks=picks,
                     probes=probes, results=results, source=source, figures={
                         "accuracy per cell": draw_table_figure(accuracy, out_dir / "transfer.png"),
                         "linear probes per stage": draw_probe_curves(
                             {f"{name} data": rows for name, rows in probes.items()}, out_dir / "transfer_probes.png",
                             "Linear probe of the source's features, per stage (test accuracy)")},
                     seconds=time.perf_counter() - started)


def strategy_of_label(label: str) -> str:
    return dict(STRATEGIES)[label]


def summarize(out_dir: Path, *, budget: str, size: TransferBudget, seed: int, seeds: int, accuracy: dict,
              picks: dict, probes: dict, results: dict, source, figures: dict, seconds: float) -> dict:
    """The table (strategies x cells, the seed's cell bold, the best starred), the advisor's row, notes."""
    labels = [label for label, _ in STRATEGIES]
    header = ["strategy"] + [f"{similarity}, {size_} (test acc %)" for similarity, size_ in CELLS]
    best = {cell: max(labels, key=lambda label: mean_std(accuracy[cell][label])[0]) for cell in CELLS}
    rows = []
    for label in labels:
        row = [label]
        for cell in CELLS:
            text = format_mean_std(accuracy[cell][label])
            seed_says = SEED_SAYS[cell]
            if strategy_of_label(label) == seed_says or (seed_says.endswith("@stage") and label.startswith("linear@")):
                text = f"**{text}**"
            if label == best[cell]:
                text += " (best)"
            row.append(text)
        rows.append(row)
    checks = {}
    advisor_row, gain_row = ["advisor's pick (transfer.strategy=auto)"], ["best fine-tuning − scratch (points)"]
    for cell in CELLS:
        labels_of = {strategy: label for label, strategy in STRATEGIES}
        chosen = [labels_of.get(p["strategy"], p["strategy"]) for p in picks[cell]]
        # the pick's accuracy in each seed against the best strategy's mean
        scored = [accuracy[cell][label][i] if label in accuracy[cell] else math.nan for i, label in enumerate(chosen)]
        best_mean = mean_std(accuracy[cell][best[cell]])[0]
        pick_mean = mean_std(scored)[0]
        advisor_row.append(f"{', '.join(sorted(set(chosen)))}: {pick_mean:.2f} ({pick_mean - best_mean:+.2f} vs best)")
        tuned = max((label for label in labels if label != "scratch"),
                    key=lambda label: mean_std(accuracy[cell][label])[0])
        gain = mean_std(accuracy[cell][tuned])[0] - mean_std(accuracy[cell]["scratch"])[0]
        gain_row.append(f"{gain:+.2f} ({tuned})")
        checks[", ".join(cell)] = {"best": best[cell], "best_acc": best_mean, "advisor": sorted(set(chosen)),
                                   "advisor_acc": pick_mean, "advisor_within_1pt": bool(pick_mean >= best_mean - 1),
                                   "best_ft_minus_scratch": gain, "best_ft": tuned,
                                   "probe_acc": [p["probe_acc"] for p in picks[cell]]}
    seed_row = ["the seed's choice"]
    for cell in CELLS:
        chosen = [label for label in labels if strategy_of_label(label) == SEED_SAYS[cell]
                  or (SEED_SAYS[cell].endswith("@stage") and label.startswith("linear@"))]
        top_pick = max(chosen, key=lambda label: mean_std(accuracy[cell][label])[0])
        value = mean_std(accuracy[cell][top_pick])[0]
        seed_row.append(f"{top_pick}: {value:.2f} ({value - checks[', '.join(cell)]['best_acc']:+.2f} vs best)")
        checks[", ".join(cell)]["seed_choice_acc"] = value
    rows += [seed_row, advisor_row, gain_row]
    speed = {cell: {label: mean_std(values)[0] for label, values in per_image_rows(results, cell).items()}
             for cell in CELLS}
    notes = [f"Source: `fastnet` width {size.width}, depth 3, trained {size.source_epochs} epochs on {size.source} "
             f"classes 0-4: test accuracy {100 * source.summary['test_acc']:.2f}% ({source.seconds:.0f} s).",
             f"Small cells: {size.small_per_class} training images per class ({size.small_epochs} epochs, batch "
             f"{size.small_batch}); big cells: {size.big_per_class} per class ({size.big_epochs} epochs, batch 128). "
             "linear and linear@stageK fit a logistic regression once (no epochs).",
             "Bold: the strategy the seed recommends for the cell; (best): the highest mean. The advisor's row "
             "scores the strategy it picked in each seed by that strategy's measured accuracy.",
             "Probes per stage (test accuracy, bottom first): " + "; ".join(
                 f"{name}: " + ", ".join(f"{100 * row.test_acc:.1f}" for row in rows_) for name, rows_ in probes.items()),
             f"The whole study took {seconds / 60:.1f} min."]
    extra = {"checks": checks, "probes": {name: [dataclasses.asdict(row) for row in rows_] for name, rows_ in probes.items()},
             "advisor": {", ".join(cell): picks[cell] for cell in CELLS},
             "images_per_second": {", ".join(cell): speed[cell] for cell in CELLS},
             "source": source.to_dict(), "seconds": seconds}
    return write_results(out_dir, name="transfer", title="Fine-tuning by the seed's table (seed §4)", notes=notes,
                         header=header, rows=rows, results=results, budget=budget, seed=seed, seeds=seeds, data=None,
                         figures=figures, extra=extra)


def per_image_rows(results: dict, cell: tuple[str, str]) -> dict[str, list[float]]:
    name = "-".join(cell)
    return {label: [r.summary.get("images_per_second") or math.nan for r in results[f"{name}/{file_label(label)}"]]
            for label, _ in STRATEGIES}
