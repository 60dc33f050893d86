"""Planning a run's length: `train.time_budget` (seconds of training on this machine) and `train.min_steps`
(a floor that small data sets reach, when train.epochs is unset).

A time budget is a plan, not a stopwatch: the schedule (warm-up, then cosine or one-cycle to its end) is
stretched over as many steps as fit the budget, so the run ends on time with its learning rate decayed, never
cut off mid-decay because time ran out. The plan is made from this machine's measured speed:

  1. the first steps are timed (after STEADY_AFTER steps, once CALIBRATION_STEPS steps and CALIBRATION_SECONDS
     have passed, or a tenth of the budget) and the steps that fit are planned, each epoch's end (validation,
     checkpoint) measured where one has passed and estimated where not;
  2. at a quarter and at two thirds of the budget (REPLAN_AT; not before twice the first plan's time, nor
     before half the budget while no epoch has ended) the plan is made again from all the timings so far, and
     kept where it moved by more than REPLAN_CHANGE. The schedule is stretched or shrunk a little each time;
     the later a plan, the less time the steps have to drift from it.

What is counted is the training loop: every step, every epoch's validation and checkpoint (summary.json's
loop_seconds); loading the data, building the model and the test split's evaluation are outside it. The
warm-up stays the share of the run the recipe gives it (schedule.warmup_epochs of train.epochs: 1 of 12 by
default), so a short budget does not spend a third of itself warming up.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from cnntricks.config import DEFAULT_EPOCHS

STEADY_AFTER = 2            # steps before timing starts: the first ones pay for allocation and kernel choice
CALIBRATION_STEPS = 10      # steps timed before the first plan
CALIBRATION_SECONDS = 1.0   # and at least this long (a GPU's steps are milliseconds: ten are too few to time)
EVALUATION_COST = 0.5       # an epoch's end, before it is measured: validating an image ~ half training on one
                            # (forward only, twice with flip TTA); replaced by the measured figure once an epoch ends
REPLAN_AT = (0.25, 2 / 3)   # shares of the budget at which the plan is made again (at half at the earliest while
                            # no epoch has ended): with one re-plan, at a quarter, a 60 s run ended 7.4% late when
                            # its steps slowed after it (benchmarks/frontier.py, 1 of 3 seeds)
REPLAN_CHANGE = 0.01        # a new plan replaces the last when the steps differ by more than this share


# The recipe a time budget trains when no config file is given (`cnntricks train train.time_budget=300`):
# (the smallest budget it is for, its name, the keys it sets over the default recipe), chosen by measurement
# (benchmarks/ablation.py and frontier.py, README "Time budgets"). configs/<name>.yaml is each of them with
# its budget, for `cnntricks train configs/budget-5min.yaml` (a test holds the two equal).
RECIPES = (
    (0.0, "budget-1min", ()),
    (300.0, "budget-5min", ("model.width=32",)),
    (900.0, "budget-15min", ("model.width=48", "augment.policy=standard")),
)


def recipe_for(budget: float) -> tuple[str, tuple[str, ...]]:
    """(name, keys) of the recipe for `budget` seconds: the one for the largest budget not above it."""
    return [(name, keys) for floor, name, keys in RECIPES if budget >= floor][-1]


@dataclass
class Replan:
    """An action: the run's schedule now ends at `total_steps` (warm-up `warmup_steps`); `message` says why."""
    total_steps: int
    warmup_steps: float
    message: str


def steps_within(budget: float, elapsed: float, step: int, seconds_per_step: float, epoch_end_seconds: float,
                 steps_per_epoch: int) -> int:
    """The largest total step count N >= step + 1 such that the loop, at `elapsed` seconds after `step` steps,
    ends within `budget`: elapsed + (N - step)·seconds_per_step + (epochs still to end)·epoch_end_seconds.
    An epoch ends after every steps_per_epoch steps and at N; the ends already passed are in `elapsed`."""
    ended = step // steps_per_epoch

    def seconds(total: int) -> float:
        return elapsed + (total - step) * seconds_per_step + (math.ceil(total / steps_per_epoch) - ended) * epoch_end_seconds

    low, high = step + 1, step + 1
    while seconds(high * 2) <= budget:  # grow, then bisect: seconds() rises with the total
        high *= 2
    high *= 2
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if seconds(middle) <= budget else (low, middle - 1)
    return low


class TimeBudget:
    """train.time_budget as a plug-in: times the steps and the epochs' ends, returns `Replan` actions (one,
    then one per REPLAN_AT at most); the core carries them out (Trainer.replan) and keeps the plan in its
    checkpoints (a resumed run finishes the plan it made)."""

    def __init__(self, budget: float, warmup_share: float):
        self.budget, self.warmup_share = budget, warmup_share
        self.plans = 0                 # made so far (a re-plan that moved too little to be kept counts)
        self.started = 0.0             # perf_counter at the loop's start (less the seconds before a resume)
        self.first_plan_at = 0.0       # seconds into the loop of the first plan
        self.last: tuple[int, float] | None = None  # (step, seconds) of the last read
        self.step_seconds, self.steps = 0.0, 0      # between reads inside one epoch: the steps' speed
        self.crossings: list[tuple[float, int, int]] = []  # (seconds, steps, epoch ends) of reads across ends

    def on_fit_start(self, trainer) -> None:
        self.started = trainer.loop_started  # the loop's clock (continued on a resume)
        if trainer.state.plan is not None:  # a resumed run finishes the plan it made
            self.plans = self.last_plan

    def on_losses_read(self, trainer, losses) -> Replan | None:
        step, per_epoch = trainer.state.step, trainer.steps_per_epoch
        if self.plans >= self.last_plan or not losses or step < STEADY_AFTER:
            return None
        now = time.perf_counter() - self.started
        if self.last is not None:
            last_step, last_seconds = self.last
            # epochs ended between the two reads (a read at an epoch's last step comes before its end)
            ends = (step - 1) // per_epoch - (last_step - 1) // per_epoch
            if ends == 0:
                self.step_seconds, self.steps = self.step_seconds + now - last_seconds, self.steps + step - last_step
            else:
                self.crossings.append((now - last_seconds, step - last_step, ends))
        self.last = (step, now)
        timed = self.steps >= CALIBRATION_STEPS and self.step_seconds >= CALIBRATION_SECONDS
        if not self.steps or not (timed or now >= self.budget / 10):  # a tenth of a short budget is enough
            return None
        per_step = self.step_seconds / self.steps
        if self.crossings:  # what an epoch's end adds to its steps, measured
            epoch_end = max(0.0, sum(seconds - steps * per_step for seconds, steps, _ in self.crossings)
                            / sum(ends for _, _, ends in self.crossings))
        else:  # estimated: validating an image costs about EVALUATION_COST of training on one
            epoch_end = EVALUATION_COST * per_step * len(trainer.splits.val) / trainer.batch_size
        if self.plans == 0:
            self.first_plan_at = now
            return self.plan(trainer, per_step, epoch_end, now, "from the first steps")
        share = REPLAN_AT[self.plans - 1] if self.crossings else max(0.5, REPLAN_AT[self.plans - 1])
        if now >= max(self.budget * share, 2 * self.first_plan_at):
            return self.plan(trainer, per_step, epoch_end, now, f"at {share:.0%} of the budget", replan=True)
        return None

    @property
    def last_plan(self) -> int:
        return 1 + len(REPLAN_AT)

    def plan(self, trainer, per_step: float, epoch_end: float, now: float, when: str, replan: bool = False):
        self.plans += 1
        total = steps_within(self.budget, now, trainer.state.step, per_step, epoch_end, trainer.steps_per_epoch)
        planned = trainer.state.plan and trainer.state.plan["steps"]
        if replan and planned and abs(total - planned) <= REPLAN_CHANGE * planned:
            return None
        verb = "re-planned" if replan else "planned"
        return Replan(total, self.warmup_share * total,
                      f"train.time_budget={self.budget:g} s: {verb} {when}: {1000 * per_step:.1f} ms a step, "
                      f"{epoch_end:.2f} s an epoch's end -> {total:,} steps ({total / trainer.steps_per_epoch:.1f} "
                      f"epochs of {trainer.steps_per_epoch}), the schedule ending with the budget")


def budget_plugins(cfg) -> list:
    if cfg.train.time_budget is None:
        return []
    return [TimeBudget(cfg.train.time_budget, min(1.0, cfg.schedule.warmup_epochs / cfg.train.epochs))]


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Steps an epoch of `images` training images takes (the last partial batch dropped, as the loader does)."""
    return max(1, images // min(batch_size, images))


def planned_epochs(cfg, data: dict | None) -> tuple[int, float, str | None]:
    """(train.epochs, schedule.warmup_epochs, what was planned and why, or None) for `cfg` on `data` (data.json's
    description; None before the data is read). train.epochs set: as given. Unset: DEFAULT_EPOCHS, or the epochs
    that give train.min_steps steps where the training split is small, the warm-up kept at its share of the run
    (schedule.warmup_epochs of DEFAULT_EPOCHS)."""
    t, warmup = cfg.train, cfg.schedule.warmup_epochs
    if t.epochs is not None:
        return t.epochs, warmup, None
    images = sum(data["train_counts"]) if data else None
    if not images or not t.min_steps:
        return DEFAULT_EPOCHS, warmup, None
    per_epoch = steps_per_epoch(images, cfg.optim.batch_size)
    if DEFAULT_EPOCHS * per_epoch >= t.min_steps:
        return DEFAULT_EPOCHS, warmup, None
    epochs = math.ceil(t.min_steps / per_epoch)
    share = warmup / DEFAULT_EPOCHS
    return epochs, share * epochs, (
        f"{images:,} training images make {per_epoch} steps an epoch: planned {epochs} epochs ({epochs * per_epoch:,} "
        f"steps, train.min_steps={t.min_steps}) instead of {DEFAULT_EPOCHS}, warm-up {100 * share:.0f}% of the run "
        f"({share * epochs:.1f} epochs); set train.epochs to choose")
