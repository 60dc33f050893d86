"""The run report: the figures of a run directory and `<run_dir>/report/index.html` (seed §7).

Each figure is drawn only from files in the run directory and skipped, with a note on the page,
when its file is missing, so a run written by another loop with only `history.jsonl` still gets
its loss, accuracy and LR figures. The page (html.py) puts the doctor's findings first.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnntricks.report import figures, model_figures
from cnntricks.report.html import render_page
from cnntricks.rundir import HISTORY, MISCLASSIFIED, Run, first_conv_weight, write_atomic


class Missing(Exception):
    """A figure's input is not in the run directory; the message says which and how to get it."""


def history_of(run: Run) -> tuple[list[dict], list[dict], list[dict]]:
    if not (run.path / HISTORY).is_file():
        raise Missing("needs history.jsonl (written by the trainer, or by any loop in the README's format)")
    return run.history


def stats_of(run: Run) -> list[dict]:
    if not run.has_stats:
        raise Missing("needs stats.jsonl: train with train.monitor=every:N (the default is every:50)")
    return run.stats


def draw_loss(run: Run):
    batches, epochs, events = history_of(run)
    smoothing = ((run.config or {}).get("optim") or {}).get("label_smoothing")
    classes = len(run.classes) if run.classes else 0
    return figures.loss_figure(batches, epochs, run.name, events,
                               (float(smoothing), classes) if smoothing and classes > 1 else None)


def draw_accuracy(run: Run):
    return figures.accuracy_figure(history_of(run)[1], run.name)


def draw_lr(run: Run):
    batches, epochs, events = history_of(run)
    return figures.lr_figure(batches, epochs, run.name, events)


def draw_activations(run: Run):
    from cnntricks.monitor import histogram_edges
    if not any(record.get("layers") for record in stats_of(run)):
        raise Missing("stats.jsonl holds no activation layer (the model has no activation module)")
    return model_figures.activations_figure(stats_of(run), run.name, histogram_edges)


def draw_gradients(run: Run):
    if not any(record.get("params") for record in stats_of(run)):
        raise Missing("stats.jsonl holds no weight tensor statistics")
    return model_figures.gradients_figure(stats_of(run), run.name)


def draw_dead_units(run: Run):
    try:
        return model_figures.dead_units_figure(stats_of(run), run.name)
    except ValueError as error:
        raise Missing(str(error)) from None


def draw_filters(run: Run):
    folder = run.latest_checkpoint
    if folder is None or not (folder / "model.safetensors").is_file():
        raise Missing("needs a checkpoint: checkpoints/<latest>/model.safetensors (written after each epoch)")
    found = first_conv_weight(folder / "model.safetensors", (run.data or {}).get("channels"))
    if found is None:
        raise Missing(f"{folder.name}/model.safetensors has no 4-D weight: the model has no convolution")
    name, weight = found
    return model_figures.filters_figure(weight, name, f"{run.name}, {folder.name}")


def draw_confusion(run: Run):
    if not run.summary or not run.summary.get("confusion"):
        raise Missing("needs summary.json with \"confusion\" (written when training finishes with a test split)")
    matrix = np.asarray(run.summary["confusion"], dtype=float)
    classes = run.classes if len(run.classes) == len(matrix) else [str(i) for i in range(len(matrix))]
    return model_figures.confusion_figure(matrix, classes, run.name)


def draw_per_class(run: Run):
    rows = (run.summary or {}).get("per_class") or []
    if not rows:
        raise Missing("needs summary.json with \"per_class\" (written when training finishes with a test split)")
    classes = run.classes if len(run.classes) == len(rows) else [str(i) for i in range(len(rows))]
    return model_figures.per_class_figure([row.get("acc") for row in rows], (run.data or {}).get("train_counts"),
                                          classes, run.name, run.summary.get("test_balanced_acc"))


def draw_misclassified(run: Run):
    file = run.path / MISCLASSIFIED
    if not file.is_file():
        raise Missing("needs misclassified.npz (written when training finishes with a test split)")
    with np.load(file, allow_pickle=False) as arrays:
        if len(arrays["labels"]) == 0:
            raise Missing("misclassified.npz is empty: no test image was misclassified")
        return model_figures.misclassified_figure(arrays["images"], arrays["labels"], arrays["predicted"],
                                            arrays["confidence"], run.classes, run.name)


@dataclass(frozen=True)
class FigureSpec:
    file: str     # its name in report/
    heading: str
    look_for: str  # the caption: what the figure shows when something is wrong
    draw: Callable[[Run], object]

    @property
    def anchor(self) -> str:
        return "fig-" + Path(self.file).stem


FIGURES = (
    FigureSpec("loss.png", "Loss", "Seed Fig. 1 and 2. A trend that is too straight means the learning rate is too "
               "low; one that barely falls or jumps means it is too high. The shaded band is the batch-to-batch "
               "spread: too wide means the batch is too small. With label smoothing the training loss cannot "
               "fall below the dotted floor, and the validation loss (plain cross-entropy) may sit below the "
               "training loss: that is the smoothing, not a bug.", draw_loss),
    FigureSpec("accuracy.png", "Accuracy", "Seed Fig. 3. A wide gap between train and validation is overfitting "
               "(regularize more); no gap at a low accuracy is too little capacity (a bigger model).", draw_accuracy),
    FigureSpec("lr.png", "Learning rate", "The schedule behind the loss curve, with the moments the LR was "
               "divided and other events.", draw_lr),
    FigureSpec("activations.png", "Activations", "Seed §3: with a good initialization each layer's output keeps a "
               "spread of one order along depth; a std that shrinks layer after layer is a vanishing signal.",
               draw_activations),
    FigureSpec("gradients.png", "Gradients and updates", "Gradient norms that fall along depth vanish; a total norm "
               "that spikes explodes. Update ratios far from 1e-3 say the learning rate is off.", draw_gradients),
    FigureSpec("dead_units.png", "Dead and saturated units", "Seed §5: with too high a learning rate 'as much as "
               "40% of your network can be dead'; saturated tanh and sigmoid units pass no gradient.",
               draw_dead_units),
    FigureSpec("filters.png", "First-layer filters", "The slides: noisy, unstructured filters mean the "
               "regularization may not be strong enough; smooth edge and colour detectors are healthy.", draw_filters),
    FigureSpec("confusion.png", "Test confusion matrix", "Which classes the model mixes up, as a share of each "
               "true class.", draw_confusion),
    FigureSpec("per_class.png", "Test recall per class", "Classes ordered by their training images: on "
               "class-imbalanced data (seed, Misc) the rare classes' recall falls behind, which plain accuracy hides; "
               "the dashed line is the balanced accuracy.", draw_per_class),
    FigureSpec("misclassified.png", "Most confident mistakes", "Test images the model got wrong with the highest "
               "confidence: label noise, ambiguous classes or a shortcut the model learned.", draw_misclassified),
)


@dataclass
class Drawn:
    spec: FigureSpec
    path: Path | None  # None: skipped
    note: str = ""     # why it was skipped


def draw_figures(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Drawn]:
    """Every figure of FIGURES that the run's files allow, into `out_dir` (default `<run_dir>/report`).

    A figure whose input is missing, or that fails to draw, is skipped with a note (and an older
    file of its name removed, so report/ matches the page); no figure stops the others.
    """
    run = Run(Path(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else run.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for spec in FIGURES:
        try:
            drawn.append(Drawn(spec, figures.save_png(spec.draw(run), out_dir / spec.file)))
        except Missing as missing:
            drawn.append(Drawn(spec, None, f"skipped: {missing}"))
        except Exception as error:  # a damaged file costs one figure, never the report
            drawn.append(Drawn(spec, None, f"could not draw it: {type(error).__name__}: {error}"))
        if drawn[-1].path is None:
            (out_dir / spec.file).unlink(missing_ok=True)
    return drawn


def write_report(run_dir: str | Path, findings: list | None = None) -> Path:
    """Draw the figures and write `<run_dir>/report/index.html`; returns its path.

    `findings=None` asks the doctor (`cnntricks.doctor.diagnose`); if the doctor fails, the page
    shows its error instead of findings.
    """
    run_dir = Path(run_dir)
    doctor_error = None
    if findings is None:
        try:
            from cnntricks.doctor import diagnose
            findings = diagnose(run_dir)
        except Exception as error:
            findings, doctor_error = [], f"{type(error).__name__}: {error}"
    drawn = draw_figures(run_dir)
    page = render_page(Run(run_dir), findings, doctor_error, drawn,
                       datetime.datetime.now().isoformat(timespec="seconds"))
    path = run_dir / "report" / "index.html"
    write_atomic(path, page)  # a browser never reads half a page
    return path
