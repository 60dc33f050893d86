"""data.imbalance: long-tailed training splits with the benchmark's profiles (Cui et al. 2019, Cao et al. 2019)."""
import pytest
import torch

from cnntricks.config import ConfigError, load
from cnntricks.data import load_splits
from cnntricks.data.longtail import long_tail_counts
from tests.data.test_load_splits import identified_npz, ids

# CIFAR-10-LT as the papers build it (Cao et al.'s IMBALANCECIFAR10: int(5000 * (1/ρ) ** (i / 9))):
# 12,406 training images at ρ = 100, 20,431 at ρ = 10
CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
CIFAR10_LT_10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]


def test_the_exponential_profile_gives_cifar10_lt_counts():
    assert long_tail_counts([5000] * 10, 100) == CIFAR10_LT_100 and sum(CIFAR10_LT_100) == 12406
    assert long_tail_counts([5000] * 10, 10) == CIFAR10_LT_10 and sum(CIFAR10_LT_10) == 20431
    assert long_tail_counts([5000] * 10, 1) == [5000] * 10


def test_the_step_profile_halves_the_classes():
    assert long_tail_counts([5000] * 10, 100, "step") == [5000] * 5 + [50] * 5
    assert long_tail_counts([600] * 3, 10, "step") == [600, 60, 60]  # C // 2 = 1 head class


def test_a_class_keeps_what_it_has_and_at_least_one_image():
    assert long_tail_counts([100, 30, 100, 0], 1000) == [100, 10, 1, 0]  # 100 · 1000^(-1/3) = 10, 100 · 1000^(-2/3) = 1
    assert long_tail_counts([10, 10], 1000) == [10, 1]
    with pytest.raises(ValueError, match="one of exp, step"):
        long_tail_counts([10, 10], 10, "linear")


def test_only_the_training_split_becomes_long_tailed_seeded_and_nested(tmp_path, data_config):
    root = identified_npz(tmp_path, n=440, classes=4)
    plain = load_splits(data_config(source="npz", root=root), 0)
    tailed = load_splits(data_config(source="npz", root=root, imbalance=10), 0)
    counts = plain.train.class_counts().tolist()
    assert tailed.train.class_counts().tolist() == long_tail_counts(counts, 10)
    assert max(tailed.train.class_counts()) / min(tailed.train.class_counts()) == pytest.approx(10, rel=0.15)  # 99 -> 9
    assert ids(tailed.train) <= ids(plain.train)
    assert ids(tailed.val) == ids(plain.val) and torch.equal(tailed.test.labels, plain.test.labels)
    again = load_splits(data_config(source="npz", root=root, imbalance=10), 0)
    milder = load_splits(data_config(source="npz", root=root, imbalance=3), 0)
    assert ids(again.train) == ids(tailed.train) and ids(tailed.train) <= ids(milder.train)
    step = load_splits(data_config(source="npz", root=root, imbalance=10, imbalance_profile="step"), 0)
    assert step.train.class_counts().tolist() == long_tail_counts(counts, 10, "step")


def test_a_ratio_under_one_is_a_config_error():
    with pytest.raises(ConfigError, match="data.imbalance"):
        load(None, ["data.imbalance=0.5"])


def test_a_long_tailed_run_records_its_training_counts(tmp_path):
    from cnntricks.rundir import read_json
    from cnntricks.train.loop import fit
    cfg = load(None, ["data.source=synthetic", "model.width=4", "model.depth=1", "train.threads=1", "train.epochs=1",
                      "optim.batch_size=64", "data.imbalance=8", f"data.cache_dir={tmp_path / 'cache'}"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    counts = summary["train_counts"]
    assert counts == read_json(tmp_path / "run" / "data.json")["train_counts"]
    plain = load_splits(load(None, ["data.source=synthetic", f"data.cache_dir={tmp_path / 'cache'}"]).data, 0)
    assert counts == long_tail_counts(plain.train.class_counts().tolist(), 8)
    assert sum(counts) == summary["split_sizes"]["train"]
