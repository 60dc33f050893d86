"""Learning-rate schedules: one-cycle, cosine, step, constant, and the seed's plateau rule.

Seed §4: "a typical value of LR in the beginning of your training is 0.1. In practice, if you
see that you stopped making progress on the validation set, divide the LR by 2 (or by 5), and
keep going". `plateau_divide` is a divisor, as the seed says it: PyTorch's ReduceLROnPlateau
multiplies by its `factor`, Keras too, so factor=0.5 there is plateau_divide=2 here.

The step-driven schedules are pure functions of the step (nanoGPT's `get_lr`); the plateau rule
is the one schedule with state, which lives in `Schedule.state_dict()` so a resumed run divides
at the same epoch as an uninterrupted one.
"""
from __future__ import annotations

import math

from cnntricks.config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak LR at `step` (0-based) for the step-driven schedules."""
    progress = step / max(total_steps, 1)
    if cfg.name == "onecycle":
        # Linear rise to the peak, then linear fall to final_fraction (Smith & Topin 2019,
        # the triangular form airbench uses).
        if progress < cfg.peak_fraction:
            return (progress + 1 / max(total_steps, 1)) / cfg.peak_fraction
        fall = (progress - cfg.peak_fraction) / (1 - cfg.peak_fraction)
        return 1 - (1 - cfg.final_fraction) * fall
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.name == "cosine":
        fall = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return cfg.final_fraction + (1 - cfg.final_fraction) * 0.5 * (1 + math.cos(math.pi * fall))
    if cfg.name == "step":
        return cfg.step_divide ** -(step // (cfg.step_epochs * steps_per_epoch))
    return 1.0  # constant, and plateau between its divisions


class Schedule:
    """The LR at every step, and the plateau rule's division at the end of each epoch."""

    def __init__(self, cfg: ScheduleConfig, peak_lr: float, total_steps: int, steps_per_epoch: int):
        self.cfg, self.peak_lr = cfg, peak_lr
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.plateau_scale = 1.0  # product of the plateau divisions so far
        self.best: float | None = None  # best validation accuracy seen by the plateau rule
        self.bad_epochs = 0

    def lr(self, step: int) -> float:
        return self.peak_lr * self.plateau_scale * lr_factor(
            self.cfg, step, self.total_steps, self.steps_per_epoch)

    def on_epoch_end(self, val_acc: float | None) -> str | None:
        """Apply the plateau rule; returns a message when the LR was divided."""
        if self.cfg.name != "plateau" or val_acc is None:
            return None
        if self.best is None or val_acc > self.best:
            self.best, self.bad_epochs = val_acc, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs <= self.cfg.plateau_patience:
            return None
        old = self.peak_lr * self.plateau_scale
        new = max(old / self.cfg.plateau_divide, self.cfg.min_lr)
        self.plateau_scale = new / self.peak_lr
        self.bad_epochs = 0
        return (f"validation accuracy has not improved on {self.best:.4f} for "
                f"{self.cfg.plateau_patience + 1} epochs: LR {old:.4g} -> {new:.4g} (seed §4)")

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale, self.best, self.bad_epochs = (
            state["plateau_scale"], state["best"], state["bad_epochs"])
