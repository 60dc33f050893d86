"""train.tensorboard=true: the run's figures as TensorBoard event files, in the run directory itself
(`tensorboard --logdir runs/` shows each run as one run, its hyper-parameters in the same run).

A loop plug-in (`session.train` attaches it), written with torch.utils.tensorboard's SummaryWriter:

  batch/loss, batch/lr        every step the loop reads back (the history's batch lines), at that step
  epoch/<key>                 each epoch line's train_loss, train_acc, val_loss, val_acc, lr,
                              images_per_second, at the epoch's number
  weights/<parameter>         a histogram of every weight tensor at each epoch end
  activations/<layer>         the monitor's last sampled histogram of each activation layer
                              (stats.jsonl, when train.monitor is on), and its dead share
  update_ratio/<parameter>    the monitor's last update-to-weight ratio of each weight tensor
  hparams                     the config's keys (numbers, strings, booleans) with best_val_acc and
                              test_acc as the metrics (`hparam/best_val_acc`, `hparam/test_acc`)
  report/<figure>             the report's figures, once the report is drawn (`add_report_figures`)

A resumed or rolled-back run purges the events after the step it continues from (purge_step), so
TensorBoard shows one curve, not the abandoned steps beside the new ones.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from cnntricks.config import ConfigError
from cnntricks.monitor.monitor import histogram_edges
from cnntricks.rundir import STATS

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_second")
INSTALL = "pip install tensorboard (or pip install 'cnntricks[tensorboard]')"


def summary_writer(log_dir: Path, purge_step: int | None = None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch imports tensorboard lazily, here
        raise ConfigError(f"train.tensorboard=true writes TensorBoard event files, which needs the tensorboard "
                          f"package: {INSTALL}") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def check_installed() -> None:
    """ConfigError before training when train.tensorboard=true cannot write."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(f"train.tensorboard=true needs the tensorboard package: {INSTALL}") from None


def flat_hparams(config: dict) -> dict:
    """`section.key` -> value for the config's numbers, strings and booleans (what the hparams tab shows)."""
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            if isinstance(value, (bool, int, float, str)):
                flat[f"{section}.{key}"] = value
    return flat


def last_line(path: Path, tail: int = 1 << 20) -> dict | None:
    """The last complete JSON line of a JSON-lines file (read from its last `tail` bytes)."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, 2) - tail))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


class TensorBoardLog:
    def __init__(self):
        self.writer = None

    def open(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
        step = trainer.state.step
        self.writer = summary_writer(trainer.run_dir, purge_step=step + 1 if step else None)

    def on_fit_start(self, trainer) -> None:
        self.open(trainer)
        if trainer.state.step == 0:
            from torch.utils.tensorboard.summary import hparams
            experiment, start, end = hparams(flat_hparams(trainer.cfg.to_dict()),
                                             {"hparam/best_val_acc": 0.0, "hparam/test_acc": 0.0})
            for summary in (experiment, start, end):
                self.writer.file_writer.add_summary(summary)

    def on_losses_read(self, trainer, losses) -> None:
        for step, lr, value in losses:
            if math.isfinite(value):
                self.writer.add_scalar("batch/loss", value, step)
            self.writer.add_scalar("batch/lr", lr, step)

    def on_epoch_end(self, trainer) -> None:
        epoch, record = trainer.state.epoch, trainer.state.last_epoch
        for key in EPOCH_KEYS:
            value = record.get(key)
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        for name, parameter in trainer.model.named_parameters():
            if parameter.ndim > 1:
                self.writer.add_histogram(f"weights/{name}", parameter.detach().float().cpu(), epoch)
        stats = last_line(trainer.run_dir / STATS)
        for name, layer in ((stats or {}).get("layers") or {}).items():
            counts = layer.get("hist")
            if counts and sum(counts) > 1 and all(layer.get(k) is not None for k in ("min", "max", "mean", "std")):
                number, mean, std = sum(counts), layer["mean"], layer["std"]
                self.writer.add_histogram_raw(
                    f"activations/{name}", layer["min"], layer["max"], number, mean * number,
                    std ** 2 * (number - 1) + number * mean ** 2, histogram_edges(layer)[1:], counts, epoch)
            if layer.get("dead") is not None:
                self.writer.add_scalar(f"dead_share/{name}", layer["dead"], epoch)
        for name, parameter in ((stats or {}).get("params") or {}).items():
            if parameter.get("update_ratio") is not None:
                self.writer.add_scalar(f"update_ratio/{name}", parameter["update_ratio"], epoch)
        self.writer.flush()

    def on_rolled_back(self, trainer, action, before, after) -> None:
        self.open(trainer)  # the steps after the checkpoint are gone from the history: from TensorBoard too

    def on_fit_end(self, trainer, summary) -> None:
        if summary is not None:
            for key in ("best_val_acc", "test_acc"):
                if summary.get(key) is not None:
                    self.writer.add_scalar(f"hparam/{key}", summary[key], trainer.state.epoch)
        self.writer.close()
        self.writer = None


def add_report_figures(run_dir: Path) -> int:
    """The report's PNG figures as images (report/<name>) in the run's event files; how many."""
    import numpy as np
    from PIL import Image
    figures = sorted((Path(run_dir) / "report").glob("*.png"))
    if not figures:
        return 0
    with summary_writer(run_dir) as writer:
        for figure in figures:
            with Image.open(figure) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(f"report/{figure.stem}", pixels, dataformats="HWC")
    return len(figures)
