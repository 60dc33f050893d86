"""Loop plug-ins for what users of other tools expect of a run:

  MetricsCsv      metrics.csv in the run directory, one row per epoch (always): the epoch lines of
                  history.jsonl as a table any spreadsheet or pandas opens. Rewritten whole (atomically)
                  from the history at each epoch end, so a resumed or rolled-back run's table is its
                  history's, never a row twice.
  EarlyStopping   train.patience=N: the run stops cleanly once the validation accuracy has not
                  improved for N epochs (summary.json's stop_reason "patience", an `early_stop` event).
                  Stateless: it reads the epochs from the history, so a resumed run counts on.
  BestWeights     train.keep=best|both: the best validation epoch's weights in best/ (the loop scores
                  them on the test split at the end with train.keep=best).
"""
from __future__ import annotations

import csv
import io

from cnntricks.rundir import BEST, read_history, split_history, write_atomic
from cnntricks.train.plugins import Stop
from cnntricks.train.snapshots import keep_weights

METRICS_CSV = "metrics.csv"
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
    def on_epoch_end(self, trainer) -> None:
        write_atomic(trainer.run_dir / METRICS_CSV, metrics_csv_text(epoch_rows(trainer.run_dir)))


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
    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, trainer):
        values = [record.get("val_acc") for record in epoch_rows(trainer.run_dir)]
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

    def on_epoch_end(self, trainer) -> None:
        values = [record.get("val_acc") for record in epoch_rows(trainer.run_dir)]
        if not values or values[-1] is None or any(v is not None and v >= values[-1] for v in values[:-1]):
            return
        keep_weights(trainer.model, trainer.run_dir / BEST,
                     {"epoch": trainer.state.epoch, "step": trainer.state.step, "val_acc": values[-1]})


def habit_plugins(cfg) -> list:
    """metrics.csv always; early stopping with train.patience; the best weights with train.keep."""
    return [MetricsCsv(), *([EarlyStopping(cfg.train.patience)] if cfg.train.patience else []),
            *([BestWeights()] if cfg.train.keep != "last" else [])]
