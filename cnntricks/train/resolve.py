"""The config resolved once: (config, data description, resume state) -> `Resolved`, or a
`ConfigError` naming the key.

Everything that depends on more than one key, on the data or on the machine is decided here,
before any file of the run is written: absolute data paths, the device and precision, the rules
across keys (PCA whitening needs the MLP, colour operations need RGB, a resumed run keeps its
data, model and augmentation), the monitor's `every:N` and the augmentation values. The loop,
the plug-ins and the CLI take these values and check nothing again.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from cnntricks.augment.policy import resolve as resolve_augment
from cnntricks.config import Config, ConfigError
from cnntricks.train.budget import planned_epochs
from cnntricks.train.inference import device_and_precision, uses_channels_last
from cnntricks.transfer.weights import architecture_for, published_name

# Keys a resumed run may not change: they would make it a different run than the checkpoint's.
FIXED_ON_RESUME = ("data", "preprocess", "model", "augment", "train.seed")


@dataclass(frozen=True)
class Resolved:
    cfg: Config                # a copy, data.root and data.cache_dir made absolute
    device: torch.device
    precision: str             # bf16 | fp16 | fp32
    channels_last: bool
    augment: dict              # every augmentation value: the policy's, then the user's
    augment_notice: str | None  # colour operations of a preset dropped for gray data
    monitor_every: int | None  # train.monitor: sample every N steps, None when off
    plan_notice: str | None = None  # train.epochs unset on a small training split: what was planned (train/budget.py)


def check_snapshot(cfg: Config) -> None:
    """schedule.name=snapshot: a cycle is one epoch or more, the warm-up inside the first, one schedule."""
    from cnntricks.train.schedule import cycle_ends
    cycles, epochs = cfg.schedule.cycles, cfg.train.epochs
    if cycles > epochs:
        raise ConfigError(f"schedule.cycles={cycles} is more than train.epochs={epochs}: a snapshot cycle is one "
                          f"epoch or more; lower schedule.cycles or raise train.epochs")
    first = cycle_ends(epochs, cycles)[0]
    if cfg.schedule.warmup_epochs >= first:
        raise ConfigError(f"schedule.warmup_epochs={cfg.schedule.warmup_epochs:g} fills the first snapshot cycle "
                          f"({first} epochs); lower it, or use fewer schedule.cycles")
    if cfg.imbalance.two_stage:
        raise ConfigError("schedule.name=snapshot does not combine with imbalance.two_stage (which restarts the "
                          "schedule once itself); choose one")


def absolute_paths(cfg: Config) -> Config:
    """A copy with data.root, data.cache_dir and model.pretrained absolute, so evaluate (and a resume)
    work from any folder later."""
    cfg = copy.deepcopy(cfg)
    for section, key in (("data", "root"), ("data", "cache_dir"), ("model", "pretrained")):
        value = getattr(getattr(cfg, section), key)
        if value and not (key == "pretrained" and published_name(value)):  # resnet18: a name, not a path
            setattr(getattr(cfg, section), key, str(Path(value).expanduser().resolve()))
    return cfg


def check_resume(saved: Config, wanted: Config, run_dir: Path) -> None:
    changed = []
    for name in FIXED_ON_RESUME:
        section, _, key = name.partition(".")
        before, after = getattr(saved, section), getattr(wanted, section)
        if key:
            before, after = {key: getattr(before, key)}, {key: getattr(after, key)}
        else:
            before, after = before.__dict__, after.__dict__
        changed += [f"{section}.{k}" for k in before if before[k] != after[k]]
    if changed:
        raise ConfigError(
            f"--resume {run_dir}: {', '.join(changed)} cannot change when resuming (the checkpoint was "
            f"trained with the old value); change training keys such as train.epochs or optim.lr, "
            f"or start a new run")


def monitor_every(setting: str) -> int | None:
    """train.monitor: "off" -> None, "every:N" -> N."""
    if setting == "off":
        return None
    every = setting[len("every:"):] if setting.startswith("every:") else ""
    if not every.isdigit() or int(every) < 1:
        raise ConfigError(f"train.monitor: '{setting}' is not a setting; use off, or every:N with "
                          "N >= 1 steps (the default is every:50)")
    return int(every)


def resolve(cfg: Config, data: dict | None = None, saved: Config | None = None, run_dir: Path | None = None) -> Resolved:
    """Check and resolve `cfg` for `data` (data.json's description: its "channels" decide the colour
    rules; None: before the data is read, as 3 channels) and, when resuming, the run's `saved` config."""
    cfg = absolute_paths(cfg)
    cfg.train.epochs, cfg.schedule.warmup_epochs, plan_notice = planned_epochs(cfg, data)
    if cfg.train.time_budget is not None and (cfg.schedule.name == "snapshot" or cfg.imbalance.two_stage):
        raise ConfigError(f"train.time_budget plans one schedule over the steps that fit; "
                          f"{'schedule.name=snapshot' if cfg.schedule.name == 'snapshot' else 'imbalance.two_stage'} "
                          f"lays its epochs out itself: set train.epochs instead of the budget")
    cfg.model = architecture_for(cfg.model)  # model.pretrained=resnet18 builds a resnet18
    device, precision = device_and_precision(cfg)
    if cfg.preprocess.whiten == "pca" and cfg.model.name != "mlp":
        raise ConfigError(
            f"preprocess.whiten=pca gives each image as {cfg.preprocess.components or 'C·H·W'} numbers, not an "
            f"image, which model.name={cfg.model.name} cannot read; use model.name=mlp, or "
            f"preprocess.whiten=zca or patch for the conv nets")
    imbalance = cfg.imbalance
    if imbalance.two_stage and (imbalance.sampler != "none" or imbalance.minority_crops):
        raise ConfigError("imbalance.two_stage orders the epochs itself (the head classes, then the tail); it does not "
                          "combine with imbalance.sampler or imbalance.minority_crops: set those to none and 0")
    if imbalance.two_stage and cfg.train.epochs <= (imbalance.stage2_epochs or 0):
        raise ConfigError(f"imbalance.stage2_epochs={imbalance.stage2_epochs} leaves no epoch of train.epochs="
                          f"{cfg.train.epochs} for the first stage; train.epochs counts both stages")
    if imbalance.two_stage and cfg.train.epochs < 2:
        raise ConfigError("imbalance.two_stage needs train.epochs >= 2: one or more epochs per stage")
    if cfg.schedule.name == "snapshot":
        check_snapshot(cfg)
    if cfg.data.val_fraction == 0 and cfg.data.folds is None:
        for key, value, unset in (("train.patience", cfg.train.patience, None), ("train.keep", cfg.train.keep, "last")):
            if value != unset:
                raise ConfigError(f"{key}={value} watches the validation accuracy, and data.val_fraction=0 holds out "
                                  f"no validation split; raise data.val_fraction (0.1) or drop {key}")
    if saved is not None:
        check_resume(saved, cfg, run_dir)
    try:
        augment, notice = resolve_augment(cfg.augment, (data or {}).get("channels", 3))
    except ValueError as err:  # a colour operation asked of gray images
        raise ConfigError(str(err)) from None
    return Resolved(cfg, device, precision, uses_channels_last(cfg), augment, notice, monitor_every(cfg.train.monitor),
                    plan_notice)
