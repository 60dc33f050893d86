"""Search spaces: each type suggests in its range through Optuna's API, and a wrong key or range is a
ConfigError that names it before any trial trains."""
import optuna
import pytest

from cnntricks.config import ConfigError
from cnntricks.tune.space import load_space, overrides_of, parse_param


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_every_type_suggests_within_its_range(tmp_path):
    params = load_space(write(tmp_path, """
optim.lr: {type: log, low: 0.01, high: 1.0}
schedule.warmup_epochs: {type: uniform, low: 0, high: 2}
model.width: {type: int, low: 16, high: 64, step: 16}
augment.policy: {type: categorical, choices: [flip, standard]}
"""))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = dict(item.split("=", 1) for item in overrides_of(params, trial))
        assert 0.01 <= float(values["optim.lr"]) <= 1.0 and 0 <= float(values["schedule.warmup_epochs"]) <= 2
        assert int(values["model.width"]) in (16, 32, 48, 64) and values["augment.policy"] in ("flip", "standard")
        study.tell(trial, 0.5)
    distributions = study.trials[0].distributions
    assert distributions["optim.lr"].log and not distributions["schedule.warmup_epochs"].log


def test_fixed_trial_gives_the_overrides():
    params = [parse_param("optim.lr", {"type": "log", "low": 0.01, "high": 1}),
              parse_param("model.width", {"type": "int", "low": 8, "high": 32})]
    assert overrides_of(params, optuna.trial.FixedTrial({"optim.lr": 0.05, "model.width": 16})) == [
        "optim.lr=0.05", "model.width=16"]


@pytest.mark.parametrize("text, message", [
    ("optim.lrr: {type: log, low: 0.01, high: 1}", "optim.lr"),  # did you mean
    ("optim.lr: {type: log, low: 0, high: 1}", "log needs low > 0"),
    ("optim.lr: {type: normal, low: 0, high: 1}", "type: log|uniform|int|categorical"),
    ("model.width: {type: int, low: 8.5, high: 32}", "whole low and high"),
    ("optim.lr: {type: uniform, low: 2, high: 1}", "low < high"),
    ("augment.policy: {type: categorical, choices: []}", "non-empty list"),
    ("augment.policy: {type: categorical, choices: [flip, sideways]}", "augment.policy"),
    ("optim.lr: {type: log, low: 0.01, high: 1, base: 10}", "unknown fields"),
    ("[1, 2]", "mapping of config keys"),
])
def test_a_bad_space_says_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write(tmp_path, text))


def test_a_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "nope.yaml")
