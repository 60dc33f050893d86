"""A search space in YAML over any config key, for `cnntricks tune`:

    optim.lr: {type: log, low: 0.01, high: 1.0}          # log-uniform float
    optim.weight_decay: {type: log, low: 1.0e-5, high: 1.0e-2}
    schedule.warmup_epochs: {type: uniform, low: 0, high: 2}
    model.width: {type: int, low: 16, high: 64, step: 16}  # also log: true
    augment.policy: {type: categorical, choices: [flip, standard]}

Each key is checked against the config (an unknown key, or a value the key refuses, is a
ConfigError naming it) before any trial trains.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from cnntricks import config as config_module
from cnntricks.config import ConfigError

KINDS = ("log", "uniform", "int", "categorical")


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial):
        """The trial's value (optuna's suggest_* API)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log",
                                   step=self.step if self.kind == "uniform" else None)

    def samples(self) -> list:
        """Values that must all be valid for the key: the bounds, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def parse_param(key: str, spec) -> Param:
    where = f"search space key {key}"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise ConfigError(f"{where}: give {{type: {'|'.join(KINDS)}, ...}}, got {spec!r}")
    kind = spec["type"]
    unknown = set(spec) - {"type", "low", "high", "step", "log", "choices"}
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)} (type, low, high, step, log, choices)")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list `choices`")
        return Param(key, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ConfigError(f"{where}: {kind} needs numbers low < high, got low={low!r} high={high!r}")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{where}: log needs low > 0, got {low}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: int needs whole low and high, got {low} and {high}")
    return Param(key, kind, float(low), float(high), spec.get("step"), bool(spec.get("log", False)))


def load_space(path: str | Path, base: list[str] = (), config_file: str | None = None) -> list[Param]:
    """The parameters of a space file, each checked against the config (with the base overrides)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--space {path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--space {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"--space {path}: give a mapping of config keys to their ranges (see cnntricks tune --help)")
    params = [parse_param(str(key), spec) for key, spec in raw.items()]
    for param in params:
        for value in param.samples():
            number = int(value) if param.kind == "int" else value
            config_module.load(config_file, [*base, f"{param.key}={number}"])  # a ConfigError names the key
    return params


def overrides_of(params: list[Param], trial) -> list[str]:
    """The trial's config overrides, one per parameter."""
    return [f"{p.key}={p.suggest(trial)}" for p in params]
