"""The checks: each reads the `Evidence` of a run and returns findings (seed §7).

Seed §7 reads three figures: the loss against time for different learning rates (Fig. 1: a
very high LR explodes, a high one drops fast and then stalls high, a low one falls slowly and
almost linearly), the per-batch loss, whose band is too wide for its trend when the batch is
too small (Fig. 2), and train against validation accuracy (Fig. 3: a big gap is overfitting, no
gap at a low accuracy is a model too small). The monitor's statistics (stats.jsonl) add what the
curves cannot show: dead ReLUs (seed §5: "as much as 40%"), saturated sigmoid/tanh units,
vanishing and exploding gradients, symmetric weights and unnormalized inputs.

Every threshold is a named constant below, with how it was chosen: on the planted-fault
benchmark (`benchmarks/doctor_faults.py`: 12 faults and 16 healthy configurations with near
misses, 3 seeds each), not on single runs. There, as calibrated: every fault found in 3 of 3
runs, every finding id that fired right every time (precision 1.00), no warning on any of the 48
healthy runs. Root causes demote the findings they explain to info (`CONSEQUENCES`).
"""
from __future__ import annotations

import math

from typing import Callable

import numpy as np

from cnntricks import config as config_module
from cnntricks.config import DEFAULT_EPOCHS
from cnntricks.doctor.evidence import CHANCE_SHARE, Evidence  # noqa: F401  (CHANCE_SHARE: at_chance's bar)
from cnntricks.doctor.findings import Finding
from cnntricks.registry import Registry

Check = Callable[[Evidence], list[Finding]]
CHECKS = Registry("doctor check")

# ---- thresholds (see the module docstring for how they were chosen) ---------------------------
DIVERGE_RISE = 1.5        # trend loss above 1.5x its starting value: the loss explodes (Fig. 1)
UPDATE_HIGH = 0.05        # median ‖Δw‖/‖w‖ per step above this: steps too big (healthy ~3e-3..1e-2)
UPDATE_LOW = 2e-4         # ... below this: steps too small
UPDATE_SMALL = 2.5e-3     # ... below this while the loss fell by under HALF_PROGRESS: steps at the low end of
                          # healthy, learning too slowly (calibration half of the generalization grid: RGB icons
                          # and Fashion-MNIST at LR 0.01, 1.7e-3..2.0e-3 and a 39-45% fall, where LR x3 added
                          # 4-7 points; the planted-fault benchmark's healthy runs: 3.2e-3 and up, 55% and up)
HALF_PROGRESS = 0.5
UPDATE_TINY = 5e-5        # ... below this the LR is too low however much the loss fell (LR 1e-4 on the MLP of
                          # the learning-rate study: 1.5e-5, loss 2.29 -> 1.11; healthy runs measure 1e-3 and up)
UPDATE_GOOD = 3e-3        # a too-low LR is raised by UPDATE_GOOD / the measured ratio, within LR_RAISE: the
                          # default recipe measures 3.5e-3..4.6e-3, its LR / 100 6e-5 (the ratio follows the LR)
LR_RAISE = (3.0, 100.0)   # and the advice names that factor. Capped at 10x, fix mode left the planted LR / 100
                          # runs at LR / 10 (test accuracy 0.76 against the healthy 0.86; x50 repairs all three)
WORKING_LR = 0.5          # update ratios are judged on sampled steps whose LR is at least half the run's peak:
                          # not inside the warm-up nor at the end of a decay, where they are small by design
                          # (digits, 5 epochs: 2e-5 at step 1 and 1e-5 at the last step, 1e-2 at the peak)
MIN_LOSSES = 20           # loss values the learning-rate checks need; fewer: "not enough steps" (info)
MIN_EPOCHS = 3            # epoch lines with both accuracies underfitting needs (overfitting 2, plateau PATIENCE + 2)
STILL_RISING = 0.05       # validation accuracy up 5+ points in the last epoch, over every earlier one: stopped
                          # too soon; or
STILL_LEARNING = 0.08     # training accuracy up 8+ points over the last 2 epochs (a cosine or one-cycle run's
                          # last epoch has almost no LR left, so its validation curve flattens on schedule);
STILL_LEARNING_FLAT = 0.04  # ... 4+ points where the LR at the end is still at its working value (no decay to
                          # explain the rise: Fashion-MNIST at a constant LR, +5 to +8 points where twice the
                          # epochs added 3).
                          # Calibration half of benchmarks/doctor_generalization.py: +17 to +29 points of
                          # training accuracy where twice the epochs added 5-8. The planted-fault benchmark's
                          # healthy 5-epoch runs reach +6.9 (training) and +3.6 (validation on 444 images, whose
                          # epoch-to-epoch noise is 2-3 points): the bars stay above them, and so miss runs in
                          # between (5 RGB icon epochs: +7.8, which twice the epochs would help).
OVER_REGULARIZED = 0.05   # validation accuracy 5+ points above training accuracy at the last epoch (3+ epochs):
                          # the augmentation or regularization holds the training set back (digits, an MLP
                          # with crops of 4 px on 8x8 images: train 65-67%, validation 73-76%, 5.3 to 10.7
                          # points; flip instead: +24). The planted-fault benchmark's healthy runs: +1.1 at most.
IMBALANCE_SKEW = 10.0     # training counts of the largest class over the smallest: long-tailed from 10x on
RARE_RECALL_GAP = 0.05    # mean test recall of the classes under the median count 5+ points below the rest's:
                          # the tail pays for the imbalance (a warning, remedy or not; under it, info)
DECAY_FLOOR, DECAY_CAP = 5e-4, 4e-3  # overfitting: weight decay raised from at least the recipe's, never above 4e-3
STRONGER_POLICY = {"seed": "standard", "heavy": "standard", "standard": "flip"}  # one step weaker
STALL_GAIN = 0.05         # last half of training cut the trend loss by under 5%: stalled
STUCK_HIGH = 0.5          # ... while still above half the starting loss: stuck high
SLOW_PROGRESS = 0.35      # trend loss fell by under 35% of its start over the whole run: slow
LINEAR_R2 = 0.9           # and a straight line explains the trend that well: "almost linear"
BAND_WIDTH = 0.25         # per-batch spread (median |loss - trend|) above a quarter of the trend:
                          #   batch 2 measured 0.35-0.5, batch 32 and 128 under 0.1
GAP = 0.10                # train - validation accuracy above 10 points: overfitting
VAL_RISE = 1.2            # validation loss 20% above its minimum, 2+ epochs after it: overfitting
VAL_FALLING = 0.95        # a gap while validation loss still falls (last < 95% of the best before) is batch
                          # norm's lag early in training (resnet, epochs 2-3: 16-point gap, val loss 1.34 -> 0.98)
UNDERFIT_SHARE = 0.5      # train accuracy below chance + half the way to 100% (55% for 10 classes)
                          #   ... (healthy 5-epoch runs measured >= 75%, a width-2 model 17-29%)
UNDERFIT_GAP = 0.10       # ... and within 10 points of validation: no gap at a low accuracy
PATIENCE = 3              # epochs without a new best validation accuracy: a plateau (seed §4)
DEAD_ERROR = 0.40         # seed §5: "as much as 40% of your network can be dead"
DEAD_INFO = 0.10          # reported as information above this
SATURATED = 0.50          # over half of a tanh/sigmoid layer's outputs at |.| > 0.99 (or < .01)
VANISH_RATIO = 1e-3       # first layer's gradient norm under 1e-3 of the last hidden layer's
EXPLODE_RATIO = 1e3       # ... over 1e3 of it
EXPLODE_NORM = 1e3        # or the total gradient norm above 1e3
INIT_LOSS = 0.5           # first loss off ln(C) by more than max(1, 0.5 ln C): bad initialization
DEPTH_COLLAPSE = 1e-2     # last activation layer's std under 1% of the first's at step 1
DEPTH_EXPLODE = 1e2       # ... or over 100x
NOISY_CORRELATION = 0.2   # first-layer filters (5x5 or larger) whose neighbouring weights barely correlate
NOISY_MIN_KERNEL = 5      # 3x3 filters: trained edge detectors are anti-correlated, like noise; not judged
RAW_INPUT_STD = 10.0      # inputs with std over 10 (raw 0-255 pixels have ~80)
CENTER = 0.5              # |mean| above half the std: inputs not zero-centred (seed §2)


def register(check: Check) -> Check:
    CHECKS.register(check.__name__.removeprefix("check_"))(check)
    return check


# ---- small helpers ---------------------------------------------------------------------------


def lr_of(evidence: Evidence) -> float | None:
    if evidence.config is not None:
        return evidence.config.optim.lr
    lrs = [b.get("lr") for b in evidence.batches if b.get("lr")]
    return max(lrs) if lrs else None


def last_step(evidence: Evidence) -> int:
    return evidence.steps


def epoch_of_step(evidence: Evidence, step: int) -> int | None:
    for b in evidence.batches:
        if b["step"] >= step:
            return b.get("epoch")
    return evidence.epochs[-1]["epoch"] if evidence.epochs else None


def hidden_weights(record: dict) -> list[tuple[str, dict]]:
    """The record's weight tensors in network order, the classifier head left out."""
    return [(name, p) for name, p in record.get("params", {}).items() if not name.startswith("head.")]


def working_records(evidence: Evidence) -> list[dict]:
    """The stats records taken at the working LR (WORKING_LR x the peak of history.jsonl's per-batch LRs);
    without LRs in the history (another loop), those after the first 10% of steps (warm-up)."""
    pairs = sorted((b["step"], b["lr"]) for b in evidence.batches if isinstance(b.get("lr"), (int, float)))
    if not pairs:
        return [r for r in evidence.stats if r["step"] > 0.1 * evidence.steps]
    steps, lrs = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=float)
    peak = float(lrs.max())
    # each record's LR: the batch line at its step, or the last one before it
    at = lambda step: lrs[max(0, int(np.searchsorted(steps, step, side="right")) - 1)]  # noqa: E731
    return [r for r in evidence.stats if peak > 0 and at(r["step"]) >= WORKING_LR * peak]


def median_update_ratio(evidence: Evidence) -> float | None:
    """Median ‖Δw‖/‖w‖ over the hidden weights of the records at the working LR (`working_records`)."""
    ratios = [p["update_ratio"] for r in working_records(evidence)
              for _, p in hidden_weights(r) if p.get("update_ratio") is not None]
    return float(np.median(ratios)) if ratios else None


def change_lr(evidence: Evidence, factor: float) -> dict:
    lr = lr_of(evidence)
    return {"optim.lr": float(f"{lr * factor:.3g}")} if lr else {}


def finding(source: Evidence, step: int | None = None, /, epoch: int | None = None, **fields) -> Finding:
    """A Finding stamped with the step (default: the run's last) and its epoch (default: the step's). A
    log without batch lines (another tool's, epoch by epoch) has no steps: the epoch alone."""
    if not source.batches:
        return Finding(step=None, epoch=epoch if epoch is not None else epoch_of_step(source, 0), **fields)
    step = last_step(source) if step is None else step
    return Finding(step=step, epoch=epoch if epoch is not None else epoch_of_step(source, step), **fields)


# ---- the learning rate (Fig. 1) --------------------------------------------------------------


@register
def check_nonfinite(evidence: Evidence) -> list[Finding]:
    # null in stats.jsonl is NaN or infinite (monitor.py); a value records.py left out is not there at all
    bad_stats = [r for r in evidence.stats
                 if "grad_norm_total" in r and r["grad_norm_total"] is None and r.get("params")
                 or any("weight_norm" in p and p["weight_norm"] is None for p in r.get("params", {}).values())]
    if evidence.nonfinite is None and not bad_stats:
        return []
    if evidence.nonfinite is not None:
        step, where, epoch = evidence.nonfinite
        what = f"the loss is NaN or infinite {where}"
    else:
        step, epoch = bad_stats[0]["step"], None  # the finding places the step in its epoch
        what = f"gradients or weights are NaN or infinite at step {step} (stats.jsonl)"
    return [finding(evidence, step, epoch=epoch, id="nonfinite", severity="error", title="NaN or infinite values",
                    evidence=what, figure="loss.png",
                    explanation="A non-finite number spreads to every weight in one step; the run cannot "
                                "recover by itself. Most often the learning rate is far too high (seed §7, Fig. 1), "
                                "sometimes the inputs hold NaN or are not normalized.",
                    advice="Lower the learning rate (by 10x), check the inputs, and resume from the last good "
                           "checkpoint (doctor.mode=fix does this automatically: roll back, halve the LR).",
                    change=change_lr(evidence, 0.1))]


@register
def check_lr_diverged(evidence: Evidence) -> list[Finding]:
    steps, losses = evidence.losses
    evidence_text, step, epoch = None, None, None
    if evidence.nonfinite is not None:
        step, where, epoch = evidence.nonfinite
        before = f", after rising from {losses[0]:.3g} to {losses[-1]:.3g}" if len(losses) >= 2 else ""
        evidence_text = f"the loss became non-finite {where}{before}"
    elif len(losses) >= 10:
        smooth = evidence.loss_trend
        head = max(1, len(smooth) // 20)
        start = smooth[:head].mean()
        # only after the first 5%: a fast first drop puts the very first steps above their mean (a
        # healthy batch-256 run, loss 1.7 -> 0.6 in 23 steps, was called diverged "at step 1")
        rise = np.flatnonzero(smooth[head:] > DIVERGE_RISE * start) + head
        if len(rise):
            step = int(steps[rise[0]])
            evidence_text = (f"the loss trend rose from {start:.3g} to {smooth.max():.3g} "
                             f"({smooth.max() / start:.1f}x; first above {DIVERGE_RISE}x at step {step})")
    if evidence_text is None:
        return []
    return [finding(evidence, step, epoch=epoch, id="lr_diverged", severity="error",
                    title="The learning rate is far too high",
                    evidence=evidence_text, figure="loss.png",
                    explanation="Seed §7, Fig. 1: with a very high learning rate the loss explodes instead of "
                                "falling; the steps overshoot every minimum.",
                    advice="Divide the learning rate by 10 (seed §4: start around 0.1 for SGD with a mean loss).",
                    change=change_lr(evidence, 0.1))]


@register
def check_lr_too_high(evidence: Evidence) -> list[Finding]:
    if evidence.nonfinite is not None:
        return []  # lr_diverged says it
    steps, losses = evidence.losses
    ratio = median_update_ratio(evidence)
    facts = []
    if ratio is not None and ratio > UPDATE_HIGH:
        facts.append(f"the median update-to-weight ratio is {ratio:.2g} (healthy runs: about 1e-3 to 1e-2)")
    if ratio is not None and not facts:
        return []  # the statistics say the steps are not too big: a stall has another cause
    if len(losses) >= MIN_LOSSES:
        smooth = evidence.loss_trend
        start, end, middle = smooth[0], smooth[-1], smooth[len(smooth) // 2]
        fast = (start - smooth[len(smooth) // 10]) > 0.5 * max(start - end, 1e-12)
        stalled = (middle - end) < STALL_GAIN * middle
        # a run that learned nothing and ends at ln C only lost its initial logits' spread (PyTorch's default
        # init starts the loss above ln C): that fall and stall is no sign of too big a step
        count = evidence.class_count
        settled_at_chance = (evidence.learned_nothing and count is not None
                             and abs(end - math.log(count[0])) < STALL_GAIN * math.log(count[0]))
        if fast and stalled and end > STUCK_HIGH * start and not settled_at_chance:
            facts.append(f"the loss fell fast, then stalled at {end:.3g} ({end / start:.0%} of its start) "
                         f"for the second half of training")
    if not facts:
        return []
    return [finding(evidence, id="lr_too_high", severity="warning", title="The learning rate is too high",
                    evidence="; ".join(facts), figure="loss.png",
                    explanation="Seed §7, Fig. 1: a high learning rate drops the loss quickly at first, then "
                                "stalls at a high value: the steps are too big to settle into a minimum.",
                    advice="Lower the learning rate by 3-10x, or decay it (schedule.name=cosine).",
                    change=change_lr(evidence, 0.3))]


@register
def check_lr_too_low(evidence: Evidence) -> list[Finding]:
    steps, losses = evidence.losses
    if len(losses) < MIN_LOSSES:
        return []  # check_unchecked says there were not enough steps
    smooth = evidence.loss_trend
    start, end = smooth[: max(1, len(smooth) // 20)].mean(), smooth[-1]
    progress = (start - end) / start if start > 0 else 0.0
    ratio = median_update_ratio(evidence)
    slow = 0 <= progress < SLOW_PROGRESS or (ratio is not None and ratio < UPDATE_TINY)
    r2 = float(np.corrcoef(steps, smooth)[0, 1] ** 2) if np.std(smooth) > 0 else 0.0
    # With the monitor's statistics the steps themselves must be small (a small model is slow too,
    # with normal steps); without them, the curve's shape is all there is.
    small_steps = r2 > LINEAR_R2 if ratio is None else ratio < UPDATE_LOW
    # steps at the low end of healthy and a loss that fell by under half: too slow as well, judged where the
    # run ended (mid-run the loss has not had its time: the planted-fault benchmark's healthy 10-layer MLP at
    # LR 0.03 measures 1.6e-3..1.9e-3, under half at step 31 and 62% by its end)
    last = evidence.epochs[-1]["epoch"] if evidence.epochs else 0
    low_end = (ratio is not None and ratio < UPDATE_SMALL and 0 <= progress < HALF_PROGRESS
               and ended(evidence, last))
    if not (slow and small_steps) and not low_end:
        return []
    facts = [f"the loss fell by only {progress:.0%} over {int(steps[-1])} steps, almost linearly (R² {r2:.2f})"
             if progress < SLOW_PROGRESS and small_steps
             else f"the loss fell by {'only ' if progress < HALF_PROGRESS else ''}{progress:.0%} over {int(steps[-1])} steps"]
    if ratio is not None:
        facts.append(f"median update-to-weight ratio {ratio:.2g} at the working learning rate (healthy runs: about 3e-3 to 1e-2)")
    factor = 10.0 if ratio is None else min(max(UPDATE_GOOD / ratio, LR_RAISE[0]), LR_RAISE[1])
    return [finding(evidence, id="lr_too_low", severity="warning", title="The learning rate is too low",
                    evidence="; ".join(facts), figure="loss.png",
                    explanation="Seed §7, Fig. 1: with a low learning rate the loss decreases slowly and almost "
                                "linearly; training would take far longer than needed.",
                    advice=(f"Raise the learning rate by {factor:.0f}x" + (
                        f", which brings the measured update ratio to a healthy run's {UPDATE_GOOD:g}" if ratio is not None
                        else " (no statistics to size it: the usual 3-10x, at its top)") + " (seed §4: around 0.1 for SGD)."),
                    change=change_lr(evidence, factor))]


@register
def check_batch_too_small(evidence: Evidence) -> list[Finding]:
    steps, losses = evidence.losses
    if len(losses) < 40:
        return []
    half = len(losses) // 2
    smooth = evidence.loss_trend
    spread = float(np.median(np.abs(losses[half:] - smooth[half:])))
    # relative to the trend, but not to a trend near 0 (a memorized training set), where any
    # wobble is a large share
    level = max(float(np.median(smooth[half:])), 0.1 * float(smooth[0]))
    if level <= 0 or spread / level <= BAND_WIDTH:
        return []
    batch = evidence.config.optim.batch_size if evidence.config else None
    change = {"optim.batch_size": min(128, batch * 8)} if batch else {}
    return [finding(evidence, id="batch_too_small", severity="warning", title="The batch is too small",
                    evidence=f"per-batch loss spread {spread:.3g} around a trend of {level:.3g} "
                             f"({spread / level:.0%}) in the second half of training"
                             + (f"; batch size {batch}" if batch else ""),
                    figure="loss.png",
                    explanation="Seed §7, Fig. 2: the width of the per-batch loss curve shows the batch size; "
                                "too small a batch gives gradients so noisy that the band dwarfs the trend.",
                    advice="Use a bigger batch (with a mean loss the learning rate need not change, seed §4).",
                    change=change)]


# ---- train against validation (Fig. 3) and the plateau (seed §4) ----------------------------


def accuracies(evidence: Evidence) -> list[tuple[int, float, float, float | None]]:
    """(epoch, train acc, val acc, val loss) of the epochs that have both accuracies."""
    return [(e["epoch"], e["train_acc"], e["val_acc"], e.get("val_loss")) for e in evidence.epochs
            if e.get("train_acc") is not None and e.get("val_acc") is not None]


def epoch_end_step(evidence: Evidence, epoch: int) -> int:
    steps = [b["step"] for b in evidence.batches if b.get("epoch") == epoch]
    return max(steps) if steps else last_step(evidence)


@register
def check_overfitting(evidence: Evidence) -> list[Finding]:
    rows = accuracies(evidence)
    if len(rows) < 2:
        return []
    # Epoch 1 is left out: with batch norm, validation lags training in the first epoch of every
    # healthy run (measured gaps up to 23 points). The gap must hold for two epochs in a row.
    # It must also still be there at the last epoch: an early gap that closes is not overfitting.
    # And validation loss must have stopped falling: a run that still improves on it is not overfitting yet.
    earlier = [loss for _, _, _, loss in rows[:-1] if loss is not None]
    falling = bool(earlier) and rows[-1][3] is not None and rows[-1][3] < VAL_FALLING * min(earlier)
    rows = [row for row in rows if row[0] > 1]
    facts, when = [], None
    last_epoch, last_train, last_val, _ = rows[-1] if rows else (None, 0.0, 0.0, None)
    if last_train - last_val > GAP and not falling:
        for (_, train_a, val_a, _), (epoch, train, val, _) in zip(rows, rows[1:]):
            if train_a - val_a > GAP and train - val > GAP:
                facts.append(f"train accuracy {last_train:.1%} against validation {last_val:.1%} at epoch "
                             f"{last_epoch} (gap {last_train - last_val:.1%}; above {GAP:.0%} since epoch {epoch})")
                when = epoch
                break
    losses = [(epoch, loss) for epoch, _, _, loss in rows if loss is not None]
    if len(losses) >= 3:
        best_epoch, best = min(losses, key=lambda item: item[1])
        last_epoch, last = losses[-1]
        gap = rows[-1][1] - rows[-1][2]
        if last > VAL_RISE * best and last_epoch - best_epoch >= 2 and gap > GAP / 2:
            facts.append(f"validation loss rose from {best:.3g} (epoch {best_epoch}) to {last:.3g} "
                         f"(epoch {last_epoch}) while training accuracy leads by {gap:.1%}")
            when = when or last_epoch
    if not facts:
        return []
    cfg = evidence.config
    change, severity, strongest = {}, "warning", ""
    if cfg is not None:
        # four times the weight decay (from at least the recipe's 5e-4, never above DECAY_CAP: the calibration
        # half's one overfitting run, at 5e-3 already, lost 33 points at 2e-2). No cropping policy: on the full
        # generalization grid's calibration half it cost its 3 runs 11 points (RGB icons); no dropout 0.5: it
        # raised the regularization study's test error by 2.3 points
        decay = min(max(cfg.optim.weight_decay * 4, DECAY_FLOOR), DECAY_CAP)
        if decay > cfg.optim.weight_decay:
            change["optim.weight_decay"] = float(f"{decay:.3g}")
        else:  # regularized as strongly as the doctor would set it: the gap is information, not a fault to fix
            # in place (the calibration half's 3 runs like this: no standard change added 2 points)
            severity = "info"
            strongest = (f" Weight decay is already {cfg.optim.weight_decay:g}, at or above the {DECAY_CAP:g} the "
                         f"doctor would set: more data or augmentation that suits it are what is left.")
    return [finding(evidence, epoch_end_step(evidence, when), id="overfitting", severity=severity,
                    title="The model overfits", evidence="; ".join(facts), figure="accuracy.png",
                    explanation="Seed §7, Fig. 3: a big gap between training and validation accuracy means the "
                                "network learns the training set rather than the task.",
                    advice="Regularize more (weight decay or L2, seed §6), augment the data (§1), or get more "
                           "training data; dropout 0.5 (seed §6) suits wide fully connected layers, not small nets."
                           + strongest,
                    change=change)]


@register
def check_underfitting(evidence: Evidence) -> list[Finding]:
    rows = accuracies(evidence)
    count = evidence.class_count  # data.json's, or another loop's inferred from its loss
    if len(rows) < MIN_EPOCHS or count is None:
        return []
    epoch, train, val, _ = rows[-1]
    chance = 1 / count[0]
    low = chance + UNDERFIT_SHARE * (1 - chance)
    gained = train - rows[-3][1]
    if not (train < low and abs(train - val) < UNDERFIT_GAP):
        return []
    cfg = evidence.config
    change = {}
    if cfg is not None:  # twice as wide, and at least the default model (the recipe measured in the README)
        default = config_module.ModelConfig()
        change = {"model.width": max(2 * cfg.model.width, default.width)}
        if cfg.model.depth < default.depth:
            change["model.depth"] = default.depth
    return [finding(evidence, epoch_end_step(evidence, epoch), id="underfitting", severity="warning",
                    title="The model is too small (or cannot learn this data)",
                    evidence=f"train accuracy {train:.1%}, validation {val:.1%} after {epoch} epochs (chance "
                             f"{chance:.0%}): no gap at a low accuracy; {gained:+.1%} over the last 2 epochs",
                    figure="accuracy.png",
                    explanation="Seed §7, Fig. 3: training and validation accuracy close together at a low value "
                                "mean the model's capacity is too low to fit even the training set.",
                    advice="Make the model bigger (more width or depth), train longer, or check that the labels "
                           "match the images.",
                    change=change)]


@register
def check_plateau(evidence: Evidence) -> list[Finding]:
    rows = accuracies(evidence)
    if len(rows) < PATIENCE + 2:
        return []
    best_epoch, _, best, _ = max(rows, key=lambda row: row[2])
    last_epoch = rows[-1][0]
    if last_epoch - best_epoch < PATIENCE:
        return []
    cfg = evidence.config
    if cfg is not None and cfg.schedule.name != "constant":
        return []  # a decaying schedule (cosine, step, one-cycle, plateau) acts on plateaus already
    lrs = {e["epoch"]: e.get("lr") for e in evidence.epochs}
    lr_then, lr_now = lrs.get(best_epoch), lrs.get(last_epoch)
    if lr_then is None or lr_now is None or lr_now < 0.9 * lr_then:
        return []  # the LR was decayed since (another loop's run): its schedule is already acting on it
    return [finding(evidence, epoch_end_step(evidence, best_epoch + PATIENCE), id="plateau", severity="warning",
                    title="Validation accuracy stopped improving",
                    evidence=f"best validation accuracy {best:.1%} at epoch {best_epoch}, none better in the "
                             f"{last_epoch - best_epoch} epochs since, at an unchanged learning rate {lr_now:.3g}",
                    figure="accuracy.png",
                    explanation="Seed §4: once validation accuracy stops improving, divide the learning rate by "
                                "2 (or by 5) and keep going.",
                    advice="Divide the LR by 2 on plateaus (schedule.name=plateau) or use a decaying schedule.",
                    change={"schedule.name": "plateau"})]


# ---- a run that learned nothing -----------------------------------------------------------------


def chance_change(evidence: Evidence) -> tuple[dict, str]:
    """The change for a run at chance, and why: its steps were too big (the update ratio at the working LR
    above UPDATE_HIGH, a loss that rose, or an LR of 0.3 and up) or too small (a ratio below UPDATE_LOW,
    or an LR of 0.003 and below); else the run was too short to learn: twice the epochs."""
    ratio, lr = median_update_ratio(evidence), lr_of(evidence)
    trend = evidence.loss_trend
    # risen beyond the batch noise: a loss that never left ln C (a zero-initialized net in a plain loop)
    # wanders by a fraction of a percent either way, which is no sign of too big a step
    rose = len(trend) >= 2 and trend[-1] > (1 + STALL_GAIN) * trend[0]
    if (ratio is not None and ratio > UPDATE_HIGH) or rose or (ratio is None and lr is not None and lr >= 0.3):
        return change_lr(evidence, 0.1), "the steps were too big: divide the learning rate by 10"
    if (ratio is not None and ratio < UPDATE_LOW) or (ratio is None and lr is not None and lr <= 3e-3):
        return change_lr(evidence, 10.0), "the steps were too small: raise the learning rate 10x"
    init = evidence.config.model.init if evidence.config is not None else None  # None: another loop's, unknown
    if init != "auto" and len(trend) >= 2 and trend[-1] > (1 - STALL_GAIN) * trend[0]:
        # the loss never left its start at a working LR: no gradient reaches the weights (seed §3: all-zero or
        # constant weights give every unit of a layer the same gradient); more epochs would change nothing
        return ({"model.init": "auto"} if init else {}), ("the loss never left its starting value: check the "
                                                          "initialization (all-zero or constant weights never learn, "
                                                          "seed §3) and that gradients reach the weights")
    return twice_the_epochs(evidence), "train twice as long"


def twice_the_epochs(evidence: Evidence) -> dict:
    """The change that trains twice as long (none without a config to say how long it was)."""
    if evidence.config is None:
        return {}
    return {"train.epochs": 2 * (evidence.config.train.epochs or DEFAULT_EPOCHS)}


@register
def check_at_chance(evidence: Evidence) -> list[Finding]:
    """A run at chance after 2+ epochs is never healthy, whatever else its curves show."""
    epochs = [e for e in evidence.epochs if e.get("val_acc") is not None or e.get("train_acc") is not None]
    count = evidence.class_count
    if len(epochs) < 2 or count is None:
        return []
    classes, where = count
    last = epochs[-1]
    name, accuracy = ("validation", last["val_acc"]) if last.get("val_acc") is not None else ("training", last["train_acc"])
    if accuracy >= CHANCE_SHARE / classes:
        return []
    change, what = chance_change(evidence)
    return [finding(evidence, epoch_end_step(evidence, last["epoch"]), id="at_chance", severity="error",
                    title="The run learned nothing: accuracy at chance",
                    evidence=f"{name} accuracy {accuracy:.1%} after {last['epoch']} epochs; chance is {1 / classes:.1%} "
                             f"({classes} classes, {where})",
                    figure="accuracy.png",
                    explanation="A classifier no better than guessing has learned nothing from the images: the "
                                "learning rate is far off, the run far too short, or the labels do not match the "
                                "images.",
                    advice=f"The measured evidence says: {what}; check that the labels match the images.",
                    change=change)]


def ended(evidence: Evidence, epoch: int) -> bool:
    """Has the run ended at `epoch`: summary.json, its last planned epoch, or (another loop) no config to say?"""
    cfg = evidence.config
    # (a run cnntricks wrote has its planned epochs in config.yaml; unset, the default's)
    return evidence.summary is not None or cfg is None or epoch >= (cfg.train.epochs or DEFAULT_EPOCHS)


def lr_still_working(evidence: Evidence) -> bool:
    """Is the last per-batch LR of the history still at least WORKING_LR x its peak (no decay at the end)?"""
    lrs = [b["lr"] for b in evidence.batches if isinstance(b.get("lr"), (int, float))]
    return bool(lrs) and max(lrs) > 0 and lrs[-1] >= WORKING_LR * max(lrs)


@register
def check_too_short(evidence: Evidence) -> list[Finding]:
    rows = [(e["epoch"], e["val_acc"]) for e in evidence.epochs if e.get("val_acc") is not None]
    if len(rows) < 2:
        return []
    (epoch, last), best_before = rows[-1], max(acc for _, acc in rows[:-1])
    if not ended(evidence, epoch):
        return []  # a run still training (the live doctor) or stopped by a kill: not ended too soon by plan
    train = [e["train_acc"] for e in evidence.epochs if e.get("train_acc") is not None]
    learning = train[-1] - train[max(0, len(train) - 3)] if len(train) >= 2 else 0.0
    flat = lr_still_working(evidence)
    facts = []
    if last - best_before >= STILL_RISING:
        facts.append(f"validation accuracy rose to {last:.1%} in the last epoch ({epoch}), "
                     f"{last - best_before:+.1%} over the best before it")
    if learning >= (STILL_LEARNING_FLAT if flat else STILL_LEARNING):
        facts.append(f"training accuracy rose by {learning:.1%} over the last {min(2, len(train) - 1)} epochs, "
                     f"to {train[-1]:.1%}" + (" at an undecayed learning rate" if flat else ""))
    if not facts:
        return []
    return [finding(evidence, epoch_end_step(evidence, epoch), id="too_short", severity="warning",
                    title="Training stopped while the model was still improving",
                    evidence="; ".join(facts), figure="accuracy.png",
                    explanation="Seed §7, Fig. 3: read the accuracy curves; curves still climbing at the end say "
                                "the run stopped before the model had learned what it can.",
                    advice="Train for more epochs (twice as many), with the same schedule stretched over them.",
                    change=twice_the_epochs(evidence))]


@register
def check_over_regularized(evidence: Evidence) -> list[Finding]:
    rows = accuracies(evidence)
    if len(rows) < MIN_EPOCHS:  # after 1-2 epochs the epoch's mean training accuracy still lags far behind the model
        return []
    epoch, train, val, _ = rows[-1]
    # training accuracy is the mean over an epoch of learning, validation the model at its end: early on,
    # validation leads by design; judged only where the run ended
    if val - train < OVER_REGULARIZED or not ended(evidence, epoch):
        return []
    cfg, change = evidence.config, {}
    if cfg is not None:
        if cfg.augment.policy in STRONGER_POLICY:
            change = {"augment.policy": STRONGER_POLICY[cfg.augment.policy]}
        elif cfg.model.dropout > 0:
            change = {"model.dropout": 0.0}
        elif cfg.optim.weight_decay > 5e-4:
            change = {"optim.weight_decay": float(f"{cfg.optim.weight_decay / 4:.3g}")}
    return [finding(evidence, epoch_end_step(evidence, epoch), id="over_regularized", severity="warning",
                    title="Regularization holds the training set back",
                    evidence=f"training accuracy {train:.1%} against validation {val:.1%} at epoch {epoch}: "
                             f"{val - train:.1%} below it",
                    figure="accuracy.png",
                    explanation="Seed §1, §6: augmentation and regularization fight overfitting; when the network "
                                "cannot even fit its (augmented) training images as well as the plain validation "
                                "images, they cost more than they give.",
                    advice="Weaken the augmentation (a milder policy) or the regularization (less dropout or weight "
                           "decay).",
                    change=change)]


# ---- class imbalance (seed, Misc) ---------------------------------------------------------------


def rare_and_common_recall(counts: list[int], per_class: list[dict]) -> tuple[float, float] | None:
    """(mean test recall of the classes under the median training count, of the others), or None."""
    present = sorted(n for n in counts if n)
    middle = (present[(len(present) - 1) // 2] + present[len(present) // 2]) / 2
    rare, common = [], []
    for n, row in zip(counts, per_class):
        if n and isinstance(row, dict) and isinstance(row.get("acc"), (int, float)):
            (rare if n < middle else common).append(row["acc"])
    return (float(np.mean(rare)), float(np.mean(common))) if rare and common else None


def rebalancing_change(evidence: Evidence) -> dict:
    """The remedy to try: the logit-adjusted loss, else a class-balanced sampler (none without a config, or
    when both are on)."""
    cfg = evidence.config
    if cfg is None:
        return {}
    if cfg.imbalance.loss == "ce":
        return {"imbalance.loss": "logit_adjusted"}
    if cfg.imbalance.sampler == "none" and not cfg.imbalance.two_stage:
        return {"imbalance.sampler": "class_balanced"}
    return {}


@register
def check_class_imbalance(evidence: Evidence) -> list[Finding]:
    counts, summary = evidence.train_counts, evidence.summary
    present = [n for n in counts or [] if n]
    if len(present) < 2 or summary is None or max(present) < IMBALANCE_SKEW * min(present):
        return []
    recalls = rare_and_common_recall(counts, summary.get("per_class") or [])
    if recalls is None:
        return []
    rare, common = recalls
    cfg = evidence.config
    remedied = cfg is not None and (cfg.imbalance.loss != "ce" or cfg.imbalance.sampler != "none"
                                    or cfg.imbalance.minority_crops > 0 or cfg.imbalance.two_stage)
    severity = "warning" if common - rare >= RARE_RECALL_GAP else "info"  # a remedy that leaves the gap: not enough
    balanced = summary.get("test_balanced_acc")
    return [finding(evidence, id="class_imbalance", severity=severity,
                    title="The training classes are imbalanced" + (", and the rare ones pay for it"
                                                                  if common - rare >= RARE_RECALL_GAP else ""),
                    evidence=f"training images per class from {max(present)} to {min(present)} "
                             f"({max(present) / min(present):.0f}x); test recall {rare:.1%} on the classes under the "
                             f"median count against {common:.1%} on the rest"
                             + (f"; balanced accuracy {balanced:.1%} (accuracy {summary['test_acc']:.1%})"
                                if isinstance(balanced, (int, float)) and isinstance(summary.get("test_acc"), (int, float))
                                else "") + ("; a remedy is on (imbalance.*)" if remedied else ""),
                    figure="per_class.png",
                    explanation="Seed, Misc: class-imbalanced training data \"can potentially have a severely negative "
                                "impact on overall performance\"; a model trained on it learns the class frequencies "
                                "and predicts the rare classes too seldom, which plain accuracy hides.",
                    advice="Rebalance: up- or down-sample (imbalance.sampler), extra crops of the rare classes "
                           "(imbalance.minority_crops), or a loss that corrects for the frequencies "
                           "(imbalance.loss=logit_adjusted); README, Class imbalance.",
                    change=rebalancing_change(evidence) if severity == "warning" else {})]
