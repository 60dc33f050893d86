"""The doctor during training (`doctor.mode`): warn, fix or stop, at the end of every epoch.

`TrainingDoctor` is a plug-in of the loop (train/plugins.py): it reads the run directory at each
epoch's end and asks for changes by returning actions (`Restart`, `Stop`, `Rollback`), which the
loop carries out; `cnntricks.session.train` attaches it for doctor.mode warn, fix and stop.

- warn (default): each new finding of severity warning or error is written to history.jsonl as
  a `finding` event (id, severity, title) and printed once.
- fix: also applies the remedy and logs it as a `remedy` event with the values before and after.
  Two kinds of remedy:
  - restart: a finding that says the configuration itself is wrong (RESTART: a far too high or
    too low LR, a bad or symmetric initialization, vanishing gradients, saturated units, dead
    ReLUs, too small a model, raw inputs) while the run has learned nothing worth keeping (best
    validation accuracy under the underfitting bar, checks.UNDERFIT_SHARE) starts the run again
    from scratch with the finding's own `change` applied, the changes of every such finding
    merged. This is what an expert does with a run whose loss curve says "wrong LR" (seed §7,
    Fig. 1): stop it, change the config, start again. The abandoned attempt is kept in
    `attempts/<n>/` (its config, history, statistics and the restart's `restart.json`); at most
    MAX_RESTARTS times.
  - in place, for a run worth keeping: plateau -> LR / 2 (seed §4); overfitting -> weight decay
    x 2; dead ReLUs, a too-high LR or exploding gradients -> LR / 2; a too-low LR -> LR x 2.
  A non-finite loss rolls back to the last good checkpoint and halves the LR (a `Rollback` with
  ROLLBACK_LR_FACTOR, asked for as the losses are read); so does a loss that exploded to
  EXPLODED_LOSS times the run's first loss while still finite.
- stop: ends the run cleanly after the epoch that raised a warning or an error; the summary's
  `stop_reason` is `doctor:<id>`.

The state (which ids were reported, when each remedy was last applied) is checkpointed, so a
resumed run neither repeats nor forgets them; the restarts are read from `attempts/`.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.doctor.checks import DECAY_CAP, DECAY_FLOOR, UNDERFIT_SHARE
from cnntricks.doctor.diagnose import diagnose
from cnntricks.doctor.findings import SEVERITIES, Finding
from cnntricks.rundir import latest_checkpoint, read_restarts
from cnntricks.train.plugins import Restart, Rollback, Stop

ROLLBACK_LR_FACTOR = 0.5   # a NaN: back to the last good checkpoint, half the learning rate
MAX_ROLLBACKS = 5          # then give up: the fault is not the learning rate alone
EXPLODED_LOSS = 100.0      # fix mode: a loss 100x the run's first is rolled back like a NaN
REMEDY_EVERY = 3           # epochs between two applications of the same remedy (the plateau patience)
# Findings whose `change` fixes the configuration rather than the moment: remedied by starting again.
RESTART = ("nonfinite", "lr_diverged", "lr_too_low", "symmetric_init", "bad_init", "vanishing_gradient",
           "saturation", "dead_relu", "underfitting", "unnormalized_input")
MAX_RESTARTS = 3           # LR 10 -> 1 -> 0.1 needs two; a third for a second fault the first hid
LR_FACTOR = {"plateau": 0.5, "dead_relu": 0.5, "lr_too_high": 0.5, "exploding_gradient": 0.5, "lr_too_low": 2.0}
DECAY_FACTOR = 2.0  # overfitting: weight decay x2 (from DECAY_FLOOR), up to DECAY_CAP (checks.py)
# (a cap of 0.05 cost the plateau benchmark runs 12 points of accuracy: 0.858 -> 0.742)


def worth_keeping(best_val_acc: float | None, classes: int) -> bool:
    """Has the run learned something a restart would throw away? Above the underfitting bar
    (chance + half the way to 100%: 55% for 10 classes), it has."""
    chance = 1 / max(classes, 1)
    return best_val_acc is not None and best_val_acc >= chance + UNDERFIT_SHARE * (1 - chance)


def restart_config(findings: list[Finding], cfg) -> tuple[object, dict, dict] | None:
    """(the config with the RESTART findings' changes applied, before, after), or None when they
    change nothing (a change already in place, or one the config refuses)."""
    new, before, after = copy.deepcopy(cfg), {}, {}
    for f in findings:
        if f.id not in RESTART:
            continue
        for key, value in f.change.items():
            if key in after:
                continue  # two findings, one key: the first (more basic) finding's value
            section, _, name = key.partition(".")
            old = getattr(getattr(cfg, section, None), name, None)
            try:
                config_module.set_value(new, key, value)
            except config_module.ConfigError:
                continue
            if getattr(getattr(new, section), name) != old:
                before[key], after[key] = old, getattr(getattr(new, section), name)
    return (new, before, after) if after else None


class TrainingDoctor:
    """`doctor.mode` as a plug-in of the training loop (train/plugins.py); `mode` and `run_dir` are
    the trainer's (cfg.doctor.mode, its run directory) unless given."""

    def __init__(self, mode: str | None = None, run_dir: str | Path | None = None):
        self.given = (mode, run_dir)
        self.mode, self.run_dir = mode, Path(run_dir) if run_dir is not None else None
        self.rolling_back: dict | None = None  # the state before a roll back this doctor asked for
        self.load_state_dict({})

    # ---- the plug-in's events ------------------------------------------------------------------

    def on_restore(self, trainer, saved: dict) -> None:
        mode, run_dir = self.given
        self.mode, self.run_dir = mode or trainer.cfg.doctor.mode, Path(run_dir or trainer.run_dir)
        if self.rolling_back is None:  # a roll back keeps what the doctor knew (on_rolled_back)
            self.load_state_dict(saved.get("doctor") or {})

    def on_fit_start(self, trainer) -> None:
        if self.mode == "fix" and latest_checkpoint(self.run_dir) is None:
            trainer.save_checkpoint()  # a NaN in the first epoch can then roll back too

    def on_losses_read(self, trainer, losses) -> Rollback | None:
        """fix: a non-finite loss, or one that exploded to EXPLODED_LOSS x the run's first (still finite,
        before it leaves garbage weights in the next checkpoint), goes back to the last checkpoint."""
        if self.mode != "fix" or self.rollbacks >= MAX_ROLLBACKS:
            return None
        first = trainer.state.first_loss
        for step, _, value in losses:
            if math.isfinite(value) and not (first is not None and value > EXPLODED_LOSS * first):
                continue
            last = latest_checkpoint(self.run_dir)
            if last is None:
                return None
            self.rolling_back = self.state_dict()
            return Rollback(last, ROLLBACK_LR_FACTOR, step, value)
        return None

    def on_rolled_back(self, trainer, action: Rollback, before: float, after: float) -> None:
        known, self.rolling_back = self.rolling_back, None
        kind = "nonfinite" if not math.isfinite(action.loss) else "exploded"
        message = (f"loss {action.loss} at step {action.step}: rolled back to {action.checkpoint.name}, "
                   f"learning rate x{action.lr_factor} (scale {before:.3g} -> {after:.3g})")
        epoch = trainer.state.epoch
        logged = known["rollback_events"] + [
            dict(epoch=epoch, step=action.step, event=kind, message=f"loss is {action.loss} at step {action.step}"),
            dict(epoch=epoch, step=action.step, event="remedy", id="nonfinite", what="rollback",
                 before=before, after=after, message=message)]
        self.load_state_dict({**known, "rollbacks": known["rollbacks"] + 1, "rollback_events": logged})
        for event in logged:  # every roll back so far, also those the cut removed
            if event["step"] > trainer.state.step:
                trainer.history.add("event", **event)
        trainer.say(f"doctor: {message}")

    def on_epoch_end(self, trainer) -> Restart | Stop | None:
        """Announce new findings (warn), apply remedies (fix: may restart), stop (stop)."""
        state = trainer.state
        new, current = self.review()
        for f in new:
            trainer.history.event(trainer, "finding", id=f.id, severity=f.severity, message=f"{f.title}: {f.evidence}")
            trainer.say(f"doctor: {f.severity} {f.id}: {f.title} ({f.evidence})")
        if (restart := self.restart_for(current, state.epoch, trainer.cfg, state.best_val_acc,
                                        len(trainer.data["classes"]))) is not None:
            return restart
        for event in self.remedies(current, state.epoch, trainer.schedule, trainer.optimizer):
            trainer.history.event(trainer, **event)
            trainer.say(f"doctor: fix: {event['message']}")
        if self.mode == "stop" and current:
            trainer.history.event(trainer, "doctor_stop", id=current[0].id,
                                  message=f"stopped by the doctor: {current[0].title}")
            return Stop(f"doctor:{current[0].id}")
        return None

    def on_checkpoint(self, trainer) -> dict:
        return {"doctor": self.state_dict()}

    # ---- what the doctor decides ---------------------------------------------------------------

    def review(self) -> tuple[list[Finding], list[Finding]]:
        """(findings at warning or above not announced before, all current ones), read from the files."""
        if self.mode == "off":
            return [], []
        current = [f for f in diagnose(self.run_dir) if f.rank >= SEVERITIES.index("warning")]
        new = [f for f in current if f.id not in self.reported]
        self.reported += [f.id for f in new]
        return new, current

    def restart_for(self, findings: list[Finding], epoch: int, cfg, best_val_acc: float | None,
                    classes: int = 10) -> Restart | None:
        """fix: a Restart when the config itself is wrong and the run has nothing worth keeping."""
        if self.mode != "fix" or worth_keeping(best_val_acc, classes):
            return None
        found = restart_config(findings, cfg)
        if found is None or len(read_restarts(self.run_dir)) >= MAX_RESTARTS:  # the folder read last: only when needed
            return None
        new, before, after = found
        ids = [f.id for f in findings if f.id in RESTART and set(f.change) & set(after)]
        changes = ", ".join(f"{key} {before[key]} -> {after[key]}" for key in after)
        return Restart(new, dict(event="remedy", id=ids[0], ids=ids, what="restart", before=before, after=after,
                                 at_epoch=epoch, message=f"{', '.join(ids)}: started again with {changes}"))

    def remedies(self, findings: list[Finding], epoch: int, schedule, optimizer) -> list[dict]:
        """Apply the in-place fix-mode remedies for `findings`; returns one event dict per change made."""
        if self.mode != "fix":
            return []
        events = []
        for f in findings:
            last = self.remedied.get(f.id)
            if last is not None and epoch - last < REMEDY_EVERY:
                continue  # spaced out: the last remedy needs time to show
            made = len(events)
            if f.id in LR_FACTOR:
                before = schedule.plateau_scale
                schedule.plateau_scale *= LR_FACTOR[f.id]
                events.append(dict(event="remedy", id=f.id, what="lr_scale", before=before,
                                   after=schedule.plateau_scale,
                                   message=f"{f.id}: learning rate x{LR_FACTOR[f.id]} "
                                           f"(scale {before:.3g} -> {schedule.plateau_scale:.3g})"))
            if f.id == "overfitting":
                group = optimizer.param_groups[0]  # the decayed weights (train/optim.py)
                key = "decoupled_decay" if group.get("decoupled_decay") else "weight_decay"
                before = group.get(key, 0.0)
                after = min(max(before * DECAY_FACTOR, DECAY_FLOOR), DECAY_CAP)
                if after != before:
                    group[key] = after
                    events.append(dict(event="remedy", id=f.id, what="weight_decay", before=before,
                                       after=after, message=f"overfitting: weight decay {before:.3g} -> {after:.3g}"))
            if len(events) > made:
                self.remedied[f.id] = epoch
        return events

    def state_dict(self) -> dict:
        return {"reported": list(self.reported), "remedied": dict(self.remedied), "rollbacks": self.rollbacks,
                "rollback_events": list(self.rollback_events)}

    def load_state_dict(self, state: dict) -> None:
        self.reported = list(state.get("reported", []))
        self.remedied = dict(state.get("remedied", {}))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.rollback_events = list(state.get("rollback_events", []))

