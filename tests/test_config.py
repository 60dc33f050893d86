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


# ---- hostile config files and overrides ---------------------------------------------------------

def write(tmp_path, content: bytes):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    return path


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    content = "optim:\n  lr: 0.1  # café\n".encode("latin-1")
    assert content.index(b"\xe9") == 23
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at byte position 23\); save the file as UTF-8"
                       ) as caught:
        config.load(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content, key, lines", [
    (b"optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n", "lr", (2, 4)),                  # inside a section
    (b"optim:\n  lr: 0.1\ntrain:\n  epochs: 2\noptim:\n  lr: 0.2\n", "optim", (1, 5)),   # a section twice
    (b"optim: {lr: 0.1, lr: 0.2}\n", "lr", (1, 1)),                                     # flow style
])
def test_a_duplicated_key_names_the_key_and_both_lines(tmp_path, content, key, lines):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=f"key '{key}' appears twice in one mapping \\(lines {lines[0]} and "
                                          f"{lines[1]}\\)") as caught:
        config.load(path)
    assert str(path) in str(caught.value)


def test_a_merge_key_may_be_overridden(tmp_path):
    path = write(tmp_path, b"optim:\n  <<: {lr: 0.2, momentum: 0.8}\n  lr: 0.3\n")
    cfg = config.load(path)
    assert cfg.optim.lr == 0.3 and cfg.optim.momentum == 0.8


@pytest.mark.parametrize("override", ["optim.lr=inf", "optim.lr=-inf", "optim.lr=nan", "optim.lr=.inf",
                                      "optim.lr=1e999", "schedule.warmup_epochs=inf", "augment.p_flip=nan",
                                      "regularize.max_norm=.inf"])
def test_non_finite_floats_are_refused_in_overrides(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key}: .* is not a finite number"):
        config.load(None, [override])


@pytest.mark.parametrize("content, key", [(b"optim:\n  lr: .inf\n", "optim.lr"),
                                          (b"schedule:\n  warmup_epochs: -.inf\n", "schedule.warmup_epochs"),
                                          (b"model:\n  dropout: .nan\n", "model.dropout")])
def test_non_finite_floats_are_refused_in_files(tmp_path, content, key):
    with pytest.raises(ConfigError, match=f"^{key}: .* is not a finite number"):
        config.load(write(tmp_path, content))


@pytest.mark.parametrize("content, found", [(b"- optim\n- lr\n", "a list"), (b"0\n", "the value '0'"),
                                            (b"false\n", "the value 'False'"), (b"just words\n", "the value 'just words'")])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path, content, found):
    with pytest.raises(ConfigError, match=f"the top level is {found}.*not a mapping"):
        config.load(write(tmp_path, content))


def test_an_empty_file_gives_the_defaults(tmp_path):
    assert config.load(write(tmp_path, b"# nothing set\n")) == config.Config()


@pytest.mark.parametrize("size", [100000, 4097, 2])
def test_absurd_image_sizes_name_the_limit(size):
    with pytest.raises(ConfigError, match=f"data.image_size: {size} is out of range; it must be between 4 and 4096"):
        config.load(None, [f"data.image_size={size}"])
    assert config.load(None, ["data.image_size=4096"]).data.image_size == 4096
