"""The doctor during training (`doctor.mode`): warn, fix or stop, at the end of every epoch.

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
  A non-finite loss rolls back to the last good checkpoint and halves the LR (the loop does that
  part: `ROLLBACK_LR_FACTOR`); so does a loss that exploded to EXPLODED_LOSS times the run's first
  loss while still finite.
- stop: ends the run cleanly after the epoch that raised a warning or an error; the summary's
  `stop_reason` is `doctor:<id>`.

The state (which ids were reported, when each remedy was last applied) is checkpointed, so a
resumed run neither repeats nor forgets them; the restarts are read from `attempts/`.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.doctor.checks import UNDERFIT_SHARE, diagnose
from cnntricks.doctor.findings import SEVERITIES, Finding

ROLLBACK_LR_FACTOR = 0.5   # a NaN: back to the last good checkpoint, half the learning rate
MAX_ROLLBACKS = 5          # then give up: the fault is not the learning rate alone
EXPLODED_LOSS = 100.0      # fix mode: a loss 100x the run's first is rolled back like a NaN
REMEDY_EVERY = 3           # epochs between two applications of the same remedy (the plateau patience)
# Findings whose `change` fixes the configuration rather than the moment: remedied by starting again.
RESTART = ("nonfinite", "lr_diverged", "lr_too_low", "symmetric_init", "bad_init", "vanishing_gradient",
           "saturation", "dead_relu", "underfitting", "unnormalized_input")
MAX_RESTARTS = 3           # LR 10 -> 1 -> 0.1 needs two; a third for a second fault the first hid
LR_FACTOR = {"plateau": 0.5, "dead_relu": 0.5, "lr_too_high": 0.5, "exploding_gradient": 0.5, "lr_too_low": 2.0}
DECAY_FACTOR, DECAY_FLOOR, DECAY_CAP = 2.0, 5e-4, 4e-3  # overfitting: weight decay x2 (from 5e-4), up to 4e-3
# (a cap of 0.05 cost the plateau benchmark runs 12 points of accuracy: 0.858 -> 0.742)


class Restart(Exception):
    """doctor.mode=fix: start the run again with `config` (raised at an epoch's end, caught by fit)."""

    def __init__(self, config, event: dict):
        super().__init__(event["message"])
        self.config, self.event = config, event


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


def read_restarts(run_dir: Path) -> list[dict]:
    """The restart events of the attempts this run abandoned, oldest first (attempts/<n>/restart.json)."""
    folder = Path(run_dir) / "attempts"
    files = sorted(folder.glob("*/restart.json"), key=lambda p: int(p.parent.name)) if folder.is_dir() else []
    return [json.loads(path.read_text()) for path in files]


def archive_attempt(run_dir: Path, event: dict, write_atomic) -> Path:
    """Keep the abandoned attempt's files in attempts/<n>/ and clear the run directory for the next.

    Kill-safe in this order: the copy is complete before its folder gets its final name, and the
    checkpoints leave by one rename. A kill before that rename resumes the old attempt from its
    checkpoint; after it, a resume finds no checkpoint and starts the old config again, which
    meets the same fault and restarts again: slower, never corrupt.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "attempts"
    folder.mkdir(exist_ok=True)
    number = 1 + max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=0)
    partial = folder / f".{number}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in ("config.yaml", "history.jsonl", "stats.jsonl", "summary.json"):  # summary: a resumed run's
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, partial / name)
    write_atomic(partial / "restart.json", json.dumps({**event, "attempt": number}, indent=1))
    partial.rename(folder / str(number))
    if (run_dir / "checkpoints").is_dir():
        doomed = folder / f".{number}.checkpoints"
        (run_dir / "checkpoints").rename(doomed)
        shutil.rmtree(doomed)
    (run_dir / "summary.json").unlink(missing_ok=True)  # the new attempt is a new run, not a finished one
    return folder / str(number)


@dataclass
class TrainingDoctor:
    mode: str
    run_dir: Path
    reported: list[str] = field(default_factory=list)        # ids already announced
    remedied: dict[str, int] = field(default_factory=dict)   # id -> epoch of its last remedy
    rollbacks: int = 0
    rollback_events: list[dict] = field(default_factory=list)  # re-written after each roll back

    def review(self) -> tuple[list[Finding], list[Finding]]:
        """(findings at warning or above not announced before, all current ones), read from the files."""
        if self.mode == "off":
            return [], []
        current = [f for f in diagnose(self.run_dir) if f.rank >= SEVERITIES.index("warning")]
        new = [f for f in current if f.id not in self.reported]
        self.reported += [f.id for f in new]
        return new, current

    def remedies(self, findings: list[Finding], epoch: int, schedule, optimizer, *, cfg=None,
                 best_val_acc: float | None = None, classes: int = 10) -> list[dict]:
        """Apply the fix-mode remedies for `findings`; returns one event dict per change made.
        Raises Restart when the run should start again (see the module docstring)."""
        if self.mode != "fix":
            return []
        if cfg is not None and not worth_keeping(best_val_acc, classes) \
                and (found := restart_config(findings, cfg)) is not None \
                and len(read_restarts(self.run_dir)) < MAX_RESTARTS:  # the folder read last: only when needed
            new, before, after = found
            ids = [f.id for f in findings if f.id in RESTART and set(f.change) & set(after)]
            changes = ", ".join(f"{key} {before[key]} -> {after[key]}" for key in after)
            raise Restart(new, dict(event="remedy", id=ids[0], ids=ids, what="restart", before=before, after=after,
                                    at_epoch=epoch, message=f"{', '.join(ids)}: started again with {changes}"))
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

