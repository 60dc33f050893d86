"""The doctor during training (`doctor.mode`): warn, fix or stop, at the end of every epoch.

- warn (default): each new finding of severity warning or error is written to history.jsonl as
  a `finding` event (id, severity, title) and printed once.
- fix: also applies the remedy and logs it as a `remedy` event with the values before and after:
  plateau -> LR / 2 (seed §4); overfitting -> weight decay x 2; dead ReLUs -> every ReLU becomes
  a Leaky ReLU (seed §5: its negative slope gives dead units a gradient again) and LR / 2; a
  too-high LR or exploding gradients -> LR / 2; a too-low LR -> LR x 2; symmetric weights or a
  bad initialization -> the weights start again from the seed's scheme for the activation
  (model.init=auto), with the optimizer's momentum cleared. A non-finite loss rolls back to the last good checkpoint and
  halves the LR (the loop does that part: `ROLLBACK_LR_FACTOR`); so does a loss that exploded
  to EXPLODED_LOSS times the run's first loss while still finite.
- stop: ends the run cleanly after the epoch that raised a warning or an error; the summary's
  `stop_reason` is `doctor:<id>`.

The state (which ids were reported, when each remedy was last applied) is checkpointed, so a
resumed run neither repeats nor forgets them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from cnntricks.doctor.checks import diagnose
from cnntricks.doctor.findings import SEVERITIES, Finding
from cnntricks.nn.activations import LEAKY_RELU_SLOPE

ROLLBACK_LR_FACTOR = 0.5   # a NaN: back to the last good checkpoint, half the learning rate
MAX_ROLLBACKS = 5          # then give up: the fault is not the learning rate alone
EXPLODED_LOSS = 100.0      # fix mode: a loss 100x the run's first is rolled back like a NaN
REMEDY_EVERY = 3           # epochs between two applications of the same remedy (the plateau patience)
REINIT = ("symmetric_init", "bad_init")  # remedied by starting the weights again
LR_FACTOR = {"plateau": 0.5, "dead_relu": 0.5, "lr_too_high": 0.5, "exploding_gradient": 0.5, "lr_too_low": 2.0}
DECAY_FACTOR, DECAY_FLOOR, DECAY_CAP = 2.0, 5e-4, 4e-3  # overfitting: weight decay x2 (from 5e-4), up to 4e-3
# (a cap of 0.05 cost the plateau benchmark runs 12 points of accuracy: 0.858 -> 0.742)


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

    def remedies(self, findings: list[Finding], epoch: int, schedule, optimizer,
                 model: nn.Module | None = None) -> list[dict]:
        """Apply the fix-mode remedies for `findings`; returns one event dict per change made."""
        if self.mode != "fix":
            return []
        events = []
        for f in findings:
            last = self.remedied.get(f.id)
            if last is not None and (epoch - last < REMEDY_EVERY or f.id in REINIT):
                continue  # spaced out; a re-initialization once (its evidence, step 1, stays)
            made = len(events)
            if (f.id in REINIT and model is not None and hasattr(model, "initialize_weights")
                    and getattr(model, "init_name", "auto") != "auto"):  # auto already: starting again changes nothing
                before = getattr(model, "init_name", None)
                model.init_name = "auto"
                model.initialize_weights()  # the seed's scheme for the activation, head 0.001·N(0,1)
                optimizer.state.clear()  # momentum built on the old weights would point nowhere
                events.append(dict(event="remedy", id=f.id, what="init", before=before, after="auto",
                                   message=f"{f.id}: weights re-initialized with model.init=auto "
                                           f"(was {before}), optimizer state cleared"))
            if f.id == "dead_relu" and model is not None and (swapped := leaky_swap(model)):
                events.append(dict(event="remedy", id=f.id, what="activation", before="relu",
                                   after=f"leaky_relu({LEAKY_RELU_SLOPE})",
                                   message=f"dead ReLUs: {swapped} ReLU layers became Leaky ReLU "
                                           f"(slope {LEAKY_RELU_SLOPE})"))
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

    def reapply(self, model: nn.Module) -> None:
        """On resume: the remedies that changed the model itself (the model is rebuilt from the config)."""
        if "dead_relu" in self.remedied:
            leaky_swap(model)

    def state_dict(self) -> dict:
        return {"reported": list(self.reported), "remedied": dict(self.remedied), "rollbacks": self.rollbacks,
                "rollback_events": list(self.rollback_events)}

    def load_state_dict(self, state: dict) -> None:
        self.reported = list(state.get("reported", []))
        self.remedied = dict(state.get("remedied", {}))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.rollback_events = list(state.get("rollback_events", []))


def leaky_swap(model: nn.Module) -> int:
    """Replace every nn.ReLU inside `model` by a Leaky ReLU, in place; returns how many.
    Neither has parameters, so checkpoints load the same."""
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.ReLU:
                setattr(parent, name, nn.LeakyReLU(LEAKY_RELU_SLOPE))
                swapped += 1
    return swapped
