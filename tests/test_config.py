import pytest

from cnntricks import config
from cnntricks.config import ConfigError


def test_seed_numbers_are_the_defaults():
    cfg = config.Config()
    assert cfg.optim.lr == 0.1  # seed §4: "a typical value of LR in the beginning ... is 0.1"
    assert cfg.schedule.plateau_divide == 2.0  # seed §4: "divide the LR by 2 (or by 5)"
    assert cfg.data.val_fraction == 0.1


def test_overrides_are_typed():
    cfg = config.load(None, ["optim.lr=0.05", "train.epochs=20", "data.subset=null",
                             "train.tta=false", "schedule.plateau_divide=5"])
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 20 and cfg.data.subset is None and cfg.train.tta is False
    assert cfg.schedule.plateau_divide == 5.0


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["optim.lrr", "did you mean 'lr'"]),
    ("optm.lr=1", ["optm", "did you mean 'optim'"]),
    ("model.name=vggg", ["model.name", "vgg", "fastnet", "did you mean 'vgg'"]),
    ("optim.lr=-1", ["optim.lr", "> 0"]),
    ("train.epochs=many", ["train.epochs", "expected int"]),
    ("train.target_accuracy=93", ["train.target_accuracy", "fraction"]),
    ("lr=0.1", ["section.key"]),
    ("optim.lr", ["section.key=value"]),
])
def test_bad_overrides_name_the_key_and_the_fix(override, words):
    with pytest.raises(ConfigError) as err:
        config.load(None, [override])
    for word in words:
        assert word in str(err.value)


def test_yaml_round_trip(tmp_path):
    cfg = config.load(None, ["model.width=64", "optim.name=adamw"])
    path = tmp_path / "c.yaml"
    config.save(cfg, path)
    assert config.load(path) == cfg


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.3\ntrain:\n  epochs: 3\n")
    cfg = config.load(path, ["optim.lr=0.2"])
    assert cfg.optim.lr == 0.2 and cfg.train.epochs == 3


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 0.3\n")
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        config.load(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)


def test_every_key_is_described():
    rows = config.describe()
    assert len(rows) == sum(len(config._section_fields(s)) for s in config.SECTIONS)
    for key, default, values, meaning in rows:
        assert meaning, f"{key} has no trailing comment to explain it"


def test_shipped_configs_load():
    from pathlib import Path
    files = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert files
    for path in files:
        config.load(path)


def test_seed_yaml_applies_the_seed_literally():
    from pathlib import Path
    cfg = config.load(Path(__file__).parents[1] / "configs" / "seed.yaml")
    assert cfg.optim.lr == 0.1 and cfg.optim.name == "sgd"            # §4
    assert cfg.schedule.name == "plateau" and cfg.schedule.plateau_divide == 2.0  # §4
    assert cfg.model.name == "vgg" and cfg.model.activation == "relu"  # §4, §5
    assert cfg.model.dropout == 0.5                                     # §6
    assert cfg.regularize.l2 > 0 and cfg.optim.weight_decay == 0        # §6: the L2 penalty ½·λ·w²
    assert cfg.preprocess.normalize == "standardize"                    # §2
    assert cfg.augment.policy == "standard"                             # §1: flips and crops
