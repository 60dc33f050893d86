"""What the doctor reads: only the run directory (config.yaml, history.jsonl, stats.jsonl, and
data.json / summary.json / the last checkpoint's weights when present), so a run written by
another loop in the documented format is diagnosed the same way. Every record is checked once
against that format as it is read (records.py): the checks see well-typed numbers only, and what
could not be read is kept in `problems` for the `unreadable` finding."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from cnntricks import config as config_module
from cnntricks.doctor import records
from cnntricks.rundir import DATA, HISTORY, STATS, SUMMARY, read_history, read_stats


CHANCE_SHARE = 1.5    # validation (else training) accuracy under 1.5x chance after 2+ epochs: nothing learned
FLAT_ACCURACY = 0.05  # accuracies that moved less than 5 points over the whole run: nothing learned
MIN_SETTLED = 20      # finite losses needed to read the level a loss settled at
SETTLED = 1.05        # ... which ends within 5% of its lowest trend value


@dataclass
class Evidence:
    run_dir: Path
    config: config_module.Config | None  # None when the run has no config.yaml (another loop)
    batches: list[dict] = field(default_factory=list)  # {"kind": "batch", "step", "epoch", "loss", "lr"}
    epochs: list[dict] = field(default_factory=list)   # {"kind": "epoch", "epoch", "train_loss", ...}
    events: list[dict] = field(default_factory=list)   # {"kind": "event", "event", "step", ...}
    stats: list[dict] = field(default_factory=list)    # stats.jsonl records (monitor/)
    classes: int | None = None                         # from data.json
    train_counts: list[int] | None = None              # training images per class, from data.json
    summary: dict | None = None                        # summary.json of a finished run
    problems: list[str] = field(default_factory=list)  # what was left out as unreadable (records.py)
    source: str = "cnntricks"                          # or the foreign log's format: keras, lightning

    @property
    def steps(self) -> int:
        return max((b["step"] for b in self.batches), default=0)

    @cached_property
    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, losses) of the per-batch records with a finite loss."""
        pairs = [(b["step"], b["loss"]) for b in self.batches
                 if isinstance(b.get("loss"), (int, float)) and math.isfinite(b["loss"])]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        steps, losses = zip(*pairs)
        return np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)

    @cached_property
    def nonfinite(self) -> tuple[int | None, str, int | None] | None:
        """(step or None, where, epoch or None) of the first non-finite loss, or None: the trainer's
        `nonfinite` event, else the first batch or epoch line whose loss is null (the trainer writes NaN
        and infinity as null; records.py makes another tool's NaN null too), whether or not an event
        says so."""
        event = next((e for e in self.events if e.get("event") == "nonfinite"), None)
        if event is not None:
            step = event.get("step")
            return step, f"at step {step}" if step is not None else "(a nonfinite event)", event.get("epoch")
        batch = next((b for b in self.batches if "loss" in b and b["loss"] is None), None)
        if batch is not None:
            return batch["step"], f"at step {batch['step']} (null in {self.file})", batch.get("epoch")
        for e in self.epochs:
            # a null val_loss beside a null val_acc is a run without a validation split
            bad = [k for k in ("train_loss", "val_loss") if k in e and e[k] is None
                   and (k == "train_loss" or e.get("val_acc") is not None)]
            if bad:
                steps = [b["step"] for b in self.batches if b.get("epoch") == e["epoch"]]
                null = "null in history.jsonl" if self.source == "cnntricks" else f"NaN in the {self.source} log"
                return max(steps, default=None), f"in epoch {e['epoch']} ({bad[0]} is {null})", e["epoch"]
        return None

    @property
    def file(self) -> str:
        return "history.jsonl" if self.source == "cnntricks" else f"the {self.source} log"

    @cached_property
    def class_count(self) -> tuple[int, str] | None:
        """(number of classes, where it comes from): data.json's classes, or else, for a run from another
        loop, inferred from the first loss (about ln C from small random weights; C from 2 to 1000)."""
        if self.classes:
            return self.classes, "data.json"
        losses = self.losses[1]
        # A run whose accuracies never moved predicts no better than the class prior, whose loss is ln C: the
        # level its loss settled at says C better than the first loss, which PyTorch's default init (logits
        # far from equal) puts above ln C (measured in the planted-fault benchmark's plain loop: 2.5-2.7 on
        # 10 classes, so C read as 12-15 and a run at 11% was not at chance)
        if self.learned_nothing and len(losses) >= MIN_SETTLED:
            level = float(self.loss_trend[-1])  # settled: at its lowest (a loss that rose says nothing of C)
            if math.log(2) * 0.9 <= level <= min(math.log(1000), SETTLED * float(self.loss_trend.min())):
                count = max(2, round(math.exp(level)))
                if self.best_accuracy < CHANCE_SHARE / count:  # and the accuracy is chance's for that C
                    return count, f"inferred from the loss it settled at, {level:.3g} ≈ ln C"
        if len(losses) and math.log(2) * 0.9 <= losses[0] <= math.log(1000):
            return max(2, round(math.exp(losses[0]))), f"inferred from the first loss {losses[0]:.3g} ≈ ln C"
        return None

    @property
    def best_accuracy(self) -> float:
        return max((e[k] for e in self.epochs for k in ("train_acc", "val_acc") if e.get(k) is not None), default=0.0)

    @property
    def learned_nothing(self) -> bool:
        """Both accuracy curves flat and low: every epoch's training and validation accuracy within
        FLAT_ACCURACY of each other and below 0.5 (2+ epochs)."""
        values = [e[k] for e in self.epochs for k in ("train_acc", "val_acc") if e.get(k) is not None]
        epochs = sum(1 for e in self.epochs if e.get("train_acc") is not None or e.get("val_acc") is not None)
        return epochs >= 2 and max(values) < 0.5 and max(values) - min(values) < FLAT_ACCURACY

    @cached_property
    def loss_trend(self) -> np.ndarray:
        """`trend` of the finite losses, computed once for every check that reads it."""
        return trend(self.losses[1])


def trend(values: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Rolling median over ~5% of the run (at least 5 points): the curve without batch noise.

    Centred windows of `window` values, shrinking at both ends. The full windows are taken as
    views of the array, a few million values at a time, so a long run costs memory in chunks.
    """
    n = len(values)
    window = max(5, n // 20)
    half = window // 2
    out = np.empty(n)
    # the ends, where the window is cut by the start or the end of the run
    for i in list(range(min(half, n))) + list(range(max(half, n - half), n)):
        out[i] = np.median(values[max(0, i - half):i + half + 1])
    full = 2 * half + 1
    if n >= full:
        windows = np.lib.stride_tricks.sliding_window_view(values, full)  # window k is centred on k + half
        rows = max(1, chunk // full)
        for start in range(0, n - 2 * half, rows):
            stop = min(start + rows, n - 2 * half)
            out[start + half:stop + half] = np.median(windows[start:stop], axis=1)
    return out


def load_evidence(run_dir: str | Path, mapping: dict[str, str] | None = None) -> Evidence:
    """Read a run directory; raises FileNotFoundError when it holds no history.jsonl. Anything else
    that cannot be read (lines, values, files) is left out and said in `problems`, never raised.
    A path without history.jsonl that is another tool's log (a Lightning version folder or its
    metrics.csv, a Keras CSVLogger file: doctor/foreign.py, `mapping` naming other columns) is read
    as its history alone."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if not (run_dir / HISTORY).is_file() and (run_dir.is_file() or (run_dir / "metrics.csv").is_file()
                                              or next(run_dir.rglob("events.out.tfevents.*"), None) is not None):
        from cnntricks.doctor.foreign import read_foreign
        kind, batches, epochs = read_foreign(run_dir, mapping)
        batches, epochs, events = records.clean_history([*batches, *epochs], problems)
        return Evidence(run_dir, None, batches=batches, epochs=epochs, events=events, problems=problems,
                        source=kind)
    batches, epochs, events = records.clean_history(read_history(run_dir, problems), problems)
    stats = records.clean_stats(read_stats(run_dir, problems), problems) if (run_dir / STATS).is_file() else []
    cfg = records.read_config(run_dir, problems)
    data = records.read_object(run_dir / DATA, problems) or {}
    classes = data.get("classes")
    if classes is not None and not isinstance(classes, list):
        problems.append(f"{DATA}: 'classes' is {records.excerpt(classes, 30)}, not a list; diagnosed without it")
        classes = None
    counts = data.get("train_counts")
    if counts is not None and not (isinstance(counts, list) and len(counts) == len(classes or [])
                                   and all(isinstance(n, int) and n >= 0 for n in counts)):
        problems.append(f"{DATA}: 'train_counts' is {records.excerpt(counts, 30)}, not a count per class; "
                        f"diagnosed without it")
        counts = None
    return Evidence(run_dir, cfg, batches=batches, epochs=epochs, events=events, stats=stats,
                    classes=len(classes or []) or None, train_counts=counts,
                    summary=records.read_object(run_dir / SUMMARY, problems), problems=problems)
