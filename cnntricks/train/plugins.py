"""The plug-in protocol of the training loop, the actions a plug-in may ask for, and the two
plug-ins every run has: the history (history.jsonl) and the progress bar.

A plug-in is any object; the loop calls the methods it defines (duck-typed, Lightning Fabric's
way: no base class). Each gets the `Trainer` (train/trainer.py): its config, model, optimizer,
schedule, splits, `state` (the counters saved in checkpoints) and `history`. In the order the
loop reaches them:

    on_restore(trainer, saved)         the first call: the state.json the run resumes or rolls back
                                       from, {} for a fresh start; a plug-in binds to the trainer here
    on_fit_start(trainer)              the model is built and its state restored (or fresh)
    on_epoch_start(trainer)
    on_step_start(trainer)             before the forward pass (the monitor arms its hooks)
    on_after_backward(trainer)         gradients are ready, the optimizer has not stepped
    on_step_end(trainer)               after the step (and max-norm); inside the timed part: keep it light
    on_losses_read(trainer, losses)    [(step, lr, loss)] read back from the device -> action or None
    on_epoch_end(trainer)              the epoch's line is written and every file flushed -> action or None
    on_rolled_back(trainer, action, before, after)   a Rollback was carried out (LR scale before, after)
    on_checkpoint(trainer) -> dict     a checkpoint is being written: the plug-in's state for its state.json
    on_fit_end(trainer, summary)       summary.json is written (summary None: the run diverged)

and `flush()`, for plug-ins that buffer records: append them to the run directory (the trainer
calls it before the epoch-end plug-ins read the files, and before a checkpoint or an error).

A plug-in that must change the run returns an action; the trainer carries it out in one place
(`Trainer.run`). No plug-in edits another one's state.

Under torchrun (train/distributed.py) the plug-ins run on rank 0, which alone writes the run directory,
and the actions they return are broadcast to every rank; a plug-in that changes the model or what it
trains on (a frozen stage, a kept classifier row) says `every_rank = True` and runs on every rank.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cnntricks.rundir import HISTORY, HistoryWriter

EVENTS = ("on_restore", "on_fit_start", "on_epoch_start", "on_step_start", "on_after_backward", "on_step_end",
          "on_losses_read", "on_epoch_end", "on_rolled_back", "on_checkpoint", "on_fit_end")


@dataclass
class Rollback:
    """Go back to `checkpoint` (weights, optimizer, RNG, files) and multiply the LR by `lr_factor`."""
    checkpoint: Path
    lr_factor: float
    step: int      # the step whose loss caused it
    loss: float


@dataclass
class Restart:
    """Start the run again from scratch with `config`; the abandoned attempt goes to attempts/<n>/."""
    config: object  # a Config
    event: dict     # the remedy event: written to attempts/<n>/restart.json and the new history


@dataclass
class Stop:
    """End the run cleanly after this epoch; summary.json's stop_reason is `reason`."""
    reason: str


class NullHistory:
    """What the trainer writes its lines to on ranks other than 0: nowhere."""

    def add(self, kind: str, **values) -> None:
        pass

    def event(self, trainer, event: str, **fields) -> None:
        pass


class History:
    """history.jsonl: a batch line every train.log_every steps, an epoch line per epoch, and the
    events other plug-ins write through `event`. Its line count goes into each checkpoint."""

    def __init__(self, run_dir: Path, log_every: int):
        self.writer = HistoryWriter(Path(run_dir) / HISTORY)
        self.log_every = log_every

    def add(self, kind: str, **values) -> None:
        self.writer.add(kind, **values)

    def event(self, trainer, event: str, **fields) -> None:
        self.writer.add("event", epoch=trainer.state.epoch, step=trainer.state.step, event=event, **fields)

    def on_losses_read(self, trainer, losses) -> None:
        for step, lr, value in losses:
            if step % self.log_every == 0 or not math.isfinite(value):  # a non-finite loss: always, as null
                self.writer.add("batch", step=step, epoch=trainer.state.epoch + 1, loss=value, lr=lr)

    def flush(self) -> int:
        return self.writer.flush()

    def on_checkpoint(self, trainer) -> dict:
        return {"history_lines": self.writer.flush()}

    def on_restore(self, trainer, saved: dict) -> None:
        # A fresh start (or a run killed before its first checkpoint) keeps no line: lines that such
        # a run wrote (its first epoch, a nonfinite event) are vouched for by no checkpoint.
        vouched = saved.get("history_lines", 0)
        if lost := self.writer.truncate(vouched):  # damaged or deleted: say so in the history itself
            counters = saved.get("trainer", {})
            self.add("event", epoch=counters.get("epoch", 0), step=counters.get("step", 0), event="history_lost",
                     message=f"{lost} of the {vouched} history lines the checkpoint vouched for were missing "
                             f"when the run resumed")


class Progress:
    """A bar per epoch (loss, LR, images/s) and one line per finished epoch, on the terminal."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, trainer) -> None:
        done = trainer.epoch.batches if trainer.epoch is not None else 0  # an epoch continued from a checkpoint
        self.bar = tqdm(total=trainer.steps_per_epoch, initial=done, leave=False, unit="step", dynamic_ncols=True,
                        desc=f"epoch {trainer.state.epoch + 1}/{trainer.cfg.train.epochs}")
        self.started, self.seen = time.perf_counter(), 0

    def on_losses_read(self, trainer, losses) -> None:
        self.seen += len(losses) * trainer.batch_size
        rate = self.seen / (time.perf_counter() - self.started)
        # drawn by bar.update, at most every 0.1 s
        self.bar.set_postfix(loss=f"{losses[-1][2]:.3f}", lr=f"{losses[-1][1]:.3g}", img_s=f"{rate:.0f}", refresh=False)
        self.bar.update(len(losses))

    def on_epoch_end(self, trainer) -> None:
        self.close()
        tqdm.write(epoch_line(trainer.state.last_epoch, trainer.cfg.train.epochs))

    def on_rolled_back(self, trainer, action, before, after) -> None:
        self.close()  # the epoch starts again, with a new bar

    def on_fit_end(self, trainer, summary) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def say(message: str) -> None:
        tqdm.write(message)


def epoch_line(record: dict, epochs: int) -> str:
    val = "-" if record["val_acc"] is None else f"{100 * record['val_acc']:.2f}%"
    return (f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"train acc {100 * record['train_acc']:.2f}%  val acc {val}  lr {record['lr']:.4g}  "
            f"{record['images_per_second']:.0f} img/s  {record['seconds']:.1f}s")
