"""`cnntricks config [SECTION] [--yaml]`: every key, its default and its meaning."""
from __future__ import annotations

import yaml

from cnntricks import config


def keys_listed(out: str) -> list[str]:
    lines = out.splitlines()
    assert lines[0].split() == ["key", "default", "values", "meaning"]
    return [line.split()[0] for line in lines[2:]]


def test_config_lists_every_key_with_its_default_and_meaning(user):
    result = user.run("config")
    assert result.code == 0, result
    rows = config.describe()
    assert keys_listed(result.out) == [key for key, *_ in rows]
    assert len(rows) == sum(len(config._section_fields(s)) for s in config.SECTIONS)
    lines = {line.split()[0]: line for line in result.out.splitlines()[2:]}
    for key, default, _, meaning in rows:
        assert meaning, f"{key} has no meaning (a trailing comment in config.py)"
        assert default in lines[key] and meaning in lines[key]
    assert "seed §4" in lines["optim.lr"]


def test_config_section_lists_only_that_section(user):
    result = user.run("config", "optim")
    assert result.code == 0, result
    assert keys_listed(result.out) == [key for key, *_ in config.describe() if key.startswith("optim.")]

    typo = user.run("config", "optimm")
    assert typo.code == 2, typo
    assert "did you mean 'optim'" in typo.err


def test_config_yaml_is_a_complete_file_config_accepts(user, tmp_path):
    result = user.run("config", "--yaml")
    assert result.code == 0, result
    values = yaml.safe_load(result.out)
    assert isinstance(values, dict) and set(values) == set(config.SECTIONS)
    assert config.from_dict(values) == config.Config()
    assert sum(len(section) for section in values.values()) == len(config.describe())

    # ... and a file to start from: edited and given to train, it is the run's config.
    (tmp_path / "mine.yaml").write_text(result.out.replace("source: fashion-mnist", "source: synthetic"))
    run = user.run("train", tmp_path / "mine.yaml", "model.width=4", "model.depth=1", "train.epochs=1",
                   "train.threads=1", "--run-dir", "run", "--quiet")
    assert run.code == 0, run
    assert config.load(user.cwd / "run" / "config.yaml").data.source == "synthetic"
