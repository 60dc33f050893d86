"""Loop plug-ins for what users of other tools expect of a run:

  MetricsCsv      metrics.csv in the run directory, one row per epoch (always): the epoch lines of
                  history.jsonl as a table any spreadsheet or pandas opens. It keeps the run's epoch
                  lines (read from the history once when the run starts or resumes, again after a
                  rollback, then each new epoch's line added) and rewrites the file whole
                  (atomically) at each epoch end: a resumed or rolled-back run's table is its
                  history's, never a row twice. The two below read the same lines.
  EarlyStopping   train.patience=N: the run stops cleanly once the validation accuracy has not
                  improved for N epochs (summary.json's stop_reason "patience", an `early_stop` event);
                  from the history's epochs, so a resumed run counts on.
  BestWeights     train.keep=best|both: the best validation epoch's weights in best/ (the loop scores
                  them on the test split at the end with train.keep=best).
"""
from __future__ import annotations

import csv
import io

from cnntricks.rundir import BEST, METRICS, read_history, split_history, write_atomic
from cnntricks.train.plugins import Stop
from cnntricks.train.snapshots import keep_weights

METRICS_CSV = METRICS  # the file's name, from the run-directory format
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_second")


def epoch_rows(run_dir) -> list[dict]:
    return split_history(read_history(run_dir))[1]


def metrics_csv_text(epochs: list[dict]) -> str:
    """The CSV of epoch records: COLUMNS, empty cells where a value is missing (no validation split)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in epochs:
        writer.writerow(["" if record.get(key) is None else record[key] for key in COLUMNS])
    return out.getvalue()


class MetricsCsv:
    def __init__(self):
        self.rows: list[dict] = []  # the run's epoch lines, as history.jsonl has them

    def on_fit_start(self, trainer) -> None:
        self.rows = epoch_rows(trainer.run_dir)

    def on_rolled_back(self, trainer, action, before, after) -> None:
        self.rows = epoch_rows(trainer.run_dir)  # the history was cut back to the checkpoint

    def on_epoch_end(self, trainer) -> None:
        line = {"kind": "epoch", **trainer.state.last_epoch}  # what the trainer just wrote to the history
        self.rows = [r for r in self.rows if r.get("epoch") != line["epoch"]] + [line]
        write_atomic(trainer.run_dir / METRICS_CSV, metrics_csv_text(self.rows))


def epochs_without_gain(values: list[float | None]) -> int:
    """Epochs since the best validation accuracy (0 when the last epoch is the best; ties do not count
    as a gain)."""
    best, since = None, 0
    for value in values:
        if value is None:
            continue
        if best is None or value > best:
            best, since = value, 0
        else:
            since += 1
    return since


class EarlyStopping:
    def __init__(self, patience: int, epochs: MetricsCsv):
        self.patience, self.epochs = patience, epochs

    def on_epoch_end(self, trainer):
        values = [record.get("val_acc") for record in self.epochs.rows]
        since = epochs_without_gain(values)
        if since < self.patience or trainer.state.epoch >= trainer.cfg.train.epochs:
            return None
        best = max(v for v in values if v is not None)
        trainer.history.event(trainer, "early_stop", message=f"validation accuracy has not improved for {since} "
                                                              f"epochs (train.patience={self.patience}); best {best:.4f}")
        return Stop("patience")


class BestWeights:
    """train.keep=best|both: the weights of the epoch whose validation accuracy beats every earlier one
    (in the history) kept in best/, replaced atomically by a better one."""

    def __init__(self, epochs: MetricsCsv):
        self.epochs = epochs

    def on_epoch_end(self, trainer) -> None:
        values = [record.get("val_acc") for record in self.epochs.rows]
        if not values or values[-1] is None or any(v is not None and v >= values[-1] for v in values[:-1]):
            return
        keep_weights(trainer.model, trainer.run_dir / BEST,
                     {"epoch": trainer.state.epoch, "step": trainer.state.step, "val_acc": values[-1]})


def habit_plugins(cfg) -> list:
    """metrics.csv always; early stopping with train.patience; the best weights with train.keep (these
    two read metrics.csv's epoch lines, so it comes first: the loop calls plug-ins in order)."""
    epochs = MetricsCsv()
    return [epochs, *([EarlyStopping(cfg.train.patience, epochs)] if cfg.train.patience else []),
            *([BestWeights(epochs)] if cfg.train.keep != "last" else [])]
