import json

import pytest
import torch

from cnntricks import config
from cnntricks.augment import FancyPCA, flip_horizontal
from cnntricks.augment.policy import PRESETS, create_mixing, create_policy, resolve
from cnntricks.config import AugmentConfig


def rgb(n=32, size=16):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_presets_cover_every_operation_and_the_seed_numbers():
    keys = set(PRESETS["none"])
    assert all(set(values) == keys for values in PRESETS.values())
    assert PRESETS["seed"]["fancy_pca"] == 0.1  # seed §1: alpha ~ N(0, 0.1)
    assert all(v == 0 for v in PRESETS["none"].values())


def test_keys_override_the_preset():
    values, _ = resolve(config.load(None, ["augment.policy=seed", "augment.rotate=30",
                                           "augment.p_shear=0"]).augment, 3)
    assert values["rotate"] == 30 and values["p_shear"] == 0 and values["translate"] == 0.1


def test_colour_on_gray_data_is_refused_when_asked_and_announced_when_preset():
    with pytest.raises(ValueError, match="RGB"):
        resolve(AugmentConfig(p_hsv=0.5), 1)
    values, notice = resolve(AugmentConfig(policy="seed"), 1)
    assert values["p_hsv"] == 0 and values["fancy_pca"] == 0 and "geometric" in notice
    assert resolve(AugmentConfig(policy="seed"), 3)[1] is None


def test_default_flip_policy_is_exactly_a_flip():
    images = rgb()
    a = create_policy(AugmentConfig(), 3)(images, torch.Generator().manual_seed(1))
    b = flip_horizontal(images, torch.Generator().manual_seed(1), p=0.5)
    assert torch.equal(a, b)


@pytest.mark.parametrize("policy", ["standard", "seed", "heavy"])
def test_policies_change_images_keep_dtype_and_are_reproducible(policy):
    images = rgb()
    fancy = FancyPCA.fit(images)
    augment = create_policy(AugmentConfig(policy=policy), 3, fancy)
    a = augment(images, torch.Generator().manual_seed(2))
    b = augment(images, torch.Generator().manual_seed(2))
    assert a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, images)


def test_fancy_pca_needs_the_fitted_eigenvectors():
    with pytest.raises(ValueError, match="FancyPCA.fit"):
        create_policy(AugmentConfig(policy="seed"), 3)


def test_mixing_is_off_by_default_and_gives_soft_targets_when_on():
    assert create_mixing(AugmentConfig(), 3, 10) is None
    mix = create_mixing(AugmentConfig(policy="heavy", mixup=0.2), 3, 4)
    images, targets = mix(torch.rand(16, 3, 8, 8), torch.randint(0, 4, (16,)), torch.Generator().manual_seed(0))
    assert targets.shape == (16, 4) and torch.allclose(targets.sum(1), torch.ones(16))


def test_training_with_the_heavy_policy_saves_the_fitted_fancy_pca(tmp_path):
    from cnntricks.train.loop import fit
    cfg = config.load(None, ["data.source=synthetic", "train.epochs=1", "augment.policy=heavy",
                             "model.width=4", "train.threads=1"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    assert summary["epochs"] == 1
    state = json.loads((tmp_path / "run" / "fancy_pca.json").read_text())
    assert len(state["eigenvalues"]) == 3
