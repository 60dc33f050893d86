"""Learning-rate schedules: one-cycle, cosine, step, constant, and the seed's plateau rule.

Seed §4: "a typical value of LR in the beginning of your training is 0.1. In practice, if you
see that you stopped making progress on the validation set, divide the LR by 2 (or by 5), and
keep going". `plateau_divide` is a divisor, as the seed says it: PyTorch's ReduceLROnPlateau
multiplies by its `factor`, Keras too, so factor=0.5 there is plateau_divide=2 here.

The step-driven schedules are pure functions of the step (nanoGPT's `get_lr`), registered in
`SCHEDULES` as `factor(cfg, step, total_steps, steps_per_epoch) -> multiplier of the peak LR`;
the plateau rule is the one schedule with state, which lives in `Schedule.state_dict()` so a
resumed run divides at the same epoch as an uninterrupted one.

Registry: `SCHEDULES` (schedule.name) - onecycle, cosine, snapshot, step, constant, plateau.
"""
from __future__ import annotations

import dataclasses
import functools
import math

from cnntricks.config import ScheduleConfig
from cnntricks.registry import Registry

SCHEDULES = Registry("schedule")


def warmup_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> float:
    return cfg.warmup_epochs * steps_per_epoch


def with_warmup(schedule):
    """`schedule` after a linear rise from 0 to the peak over `cfg.warmup_epochs` (step 0 gets
    1/warmup of the peak, not 0: a step at LR 0 would be wasted)."""
    @functools.wraps(schedule)
    def factor(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
        warmup = warmup_steps(cfg, steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        return schedule(cfg, step, total_steps, steps_per_epoch)
    return factor


@SCHEDULES.register("onecycle")
def onecycle(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear rise to the peak, then linear fall to final_fraction (Smith & Topin 2019, the
    triangular form airbench uses); no separate warm-up: the rise is one."""
    progress = step / max(total_steps, 1)
    if progress < cfg.peak_fraction:
        return (progress + 1 / max(total_steps, 1)) / cfg.peak_fraction
    fall = (progress - cfg.peak_fraction) / (1 - cfg.peak_fraction)
    return 1 - (1 - cfg.final_fraction) * fall


@SCHEDULES.register("cosine")
@with_warmup
def cosine(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Half a cosine from the peak down to final_fraction over the steps after the warm-up
    (Loshchilov & Hutter 2017, without restarts)."""
    warmup = warmup_steps(cfg, steps_per_epoch)
    fall = (step - warmup) / max(total_steps - warmup, 1)
    return cfg.final_fraction + (1 - cfg.final_fraction) * 0.5 * (1 + math.cos(math.pi * fall))


def cycle_ends(epochs: int, cycles: int) -> list[int]:
    """The epochs (1-based) at which the snapshot schedule's cycles end: as even as whole epochs allow
    (12 epochs, 5 cycles: 2, 5, 7, 10, 12)."""
    return [round(k * epochs / cycles) for k in range(1, cycles + 1)]


@SCHEDULES.register("snapshot")
@with_warmup
def snapshot(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Cosine annealing restarted schedule.cycles times (Huang et al. 2017, "Snapshot ensembles"): each
    cycle, whole epochs long (`cycle_ends`), falls from the peak to final_fraction, and the model at each
    cycle's end is a member (train/snapshots.py keeps it). The first cycle's fall starts after the warm-up."""
    epochs = max(1, round(total_steps / steps_per_epoch))
    start = 0
    for end in (e * steps_per_epoch for e in cycle_ends(epochs, cfg.cycles)):
        if step < end or end >= total_steps:
            break
        start = end
    begin = max(start, warmup_steps(cfg, steps_per_epoch)) if start == 0 else start
    position = (step - begin) / max(end - begin, 1)
    return cfg.final_fraction + (1 - cfg.final_fraction) * 0.5 * (1 + math.cos(math.pi * min(position, 1.0)))


@SCHEDULES.register("step")
@with_warmup
def step_decay(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Divided by step_divide every step_epochs epochs, counted from step 0."""
    return cfg.step_divide ** -(step // (cfg.step_epochs * steps_per_epoch))


@SCHEDULES.register("constant")
@with_warmup
def constant(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    return 1.0


@SCHEDULES.register("plateau")
@with_warmup
def plateau(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Constant between its divisions; `Schedule.on_epoch_end` divides (seed §4)."""
    return 1.0


def lr_factor(cfg: ScheduleConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak LR at `step` (0-based) for the step-driven part of `cfg.name`."""
    return SCHEDULES.get(cfg.name)(cfg, step, total_steps, steps_per_epoch)


class Schedule:
    """The LR at every step, and the plateau rule's division at the end of each epoch."""

    def __init__(self, cfg: ScheduleConfig, peak_lr: float, total_steps: int, steps_per_epoch: int):
        SCHEDULES.get(cfg.name)  # an unknown name fails here, with the known ones, not at the first step
        self.cfg, self.peak_lr = cfg, peak_lr
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.plateau_scale = 1.0  # product of the plateau divisions so far
        self.best: float | None = None  # best validation accuracy seen by the plateau rule
        self.bad_epochs = 0

    def lr(self, step: int) -> float:
        return self.peak_lr * self.plateau_scale * lr_factor(
            self.cfg, step, self.total_steps, self.steps_per_epoch)

    def plan(self, total_steps: int, warmup_steps: float) -> None:
        """The schedule stretched to end at `total_steps`, its warm-up `warmup_steps` long (train.time_budget)."""
        self.total_steps = total_steps
        self.cfg = dataclasses.replace(self.cfg, warmup_epochs=warmup_steps / self.steps_per_epoch)

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


class StagedSchedule(Schedule):
    """Schedules one after another (imbalance.two_stage): each stage runs `cfg`'s schedule over its own
    steps, peaking at its share of the peak LR, the later ones without warm-up (a fine-tuning continues,
    it does not start cold)."""

    def __init__(self, cfg: ScheduleConfig, peak_lr: float, stages: list[tuple[int, int, float]]):
        """stages: [(steps, steps per epoch, share of peak_lr)]."""
        super().__init__(cfg, peak_lr, sum(steps for steps, _, _ in stages), stages[0][1])
        self.stages = stages
        self.later = dataclasses.replace(cfg, warmup_epochs=0)

    def lr(self, step: int) -> float:
        offset = 0
        for index, (steps, per_epoch, share) in enumerate(self.stages):
            if step < offset + steps or index == len(self.stages) - 1:
                cfg = self.cfg if index == 0 else self.later
                return self.peak_lr * share * self.plateau_scale * lr_factor(cfg, step - offset, steps, per_epoch)
            offset += steps
        raise AssertionError("unreachable")


def create_schedule(cfg: ScheduleConfig, peak_lr: float, epochs: int, sampler, batch_size: int,
                    stage2_lr: float = 1.0) -> Schedule:
    """The run's schedule for the sampler's epochs: one over every step, or one per stage (two_stage:
    the later stages at `stage2_lr` of the peak)."""
    if sampler.stages:
        return StagedSchedule(cfg, peak_lr, [(stage_epochs * (size // batch_size), size // batch_size,
                                              1.0 if index == 0 else stage2_lr)
                                             for index, (stage_epochs, size) in enumerate(sampler.stages)])
    per_epoch = sampler.size // batch_size
    return Schedule(cfg, peak_lr, epochs * per_epoch, per_epoch)
