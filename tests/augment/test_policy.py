import json

import pytest
import torch

from cnntricks import config
from cnntricks.augment import FancyPCA, flip_horizontal
from cnntricks.augment.policy import OPERATIONS, POLICIES, PRESETS, create_mixing, create_policy, resolve
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
    from cnntricks.session import train
    cfg = config.load(None, ["data.source=synthetic", "train.epochs=1", "augment.policy=heavy",
                             "model.width=4", "train.threads=1"])
    summary = train(cfg, tmp_path / "run", progress=False, report=False)
    assert summary["epochs"] == 1
    state = json.loads((tmp_path / "run" / "fancy_pca.json").read_text())
    assert len(state["eigenvalues"]) == 3


def batch(channels):
    """The fixed uint8 batch the recorded fingerprints below were made on."""
    return torch.randint(0, 256, (8, channels, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def fingerprint(images):
    """(sum, position-weighted sum) of a batch: a flip, a shift or another draw changes the second."""
    weights = torch.arange(images[0].numel()) % 97 + 1
    flat = images.flatten(1).long()
    return int(flat.sum()), int((flat * weights).sum())


# (sum, weighted sum, the generator's next torch.rand) after one policy call on batch(channels)
# from torch.Generator().manual_seed(0), recorded from the if-chain create_policy before the
# operations became a registry: the same pixels, and the same draws in the same order.
RECORDED_POLICIES = {
    ("seed", 3): (579418, 28142479, 0.10889744758605957),
    ("seed", 1): (236488, 10668149, 0.19573044776916504),
    ("heavy", 3): (413181, 19957889, 0.01935333013534546),
    ("heavy", 1): (187844, 8712228, 0.845772385597229),
}
# (weighted image sum, class-weighted target sum, next torch.rand) over three calls, as above
RECORDED_MIXING = {
    "heavy": (167077.88029819727, 102.59375, 0.7522250413894653),
    "mixup": (165498.84114806028, 101.88455664629873, 0.6983478665351868),
    "both": (167463.13599688018, 101.57491073780261, 0.6719352006912231),
}


@pytest.mark.parametrize("policy, channels", sorted(RECORDED_POLICIES))
def test_policy_draws_and_pixels_are_the_recorded_ones(policy, channels):
    images, generator = batch(channels), torch.Generator().manual_seed(0)
    fancy = FancyPCA.fit(batch(3)) if channels == 3 else None
    out = create_policy(AugmentConfig(policy=policy), channels, fancy)(images, generator)
    total, weighted, next_draw = RECORDED_POLICIES[policy, channels]
    # pixels within 0.1%: another CPU may round an interpolated pixel the other way; the draws are exact
    assert fingerprint(out) == pytest.approx((total, weighted), rel=1e-3)
    assert torch.rand(1, generator=generator).item() == next_draw


@pytest.mark.parametrize("name", sorted(RECORDED_MIXING))
def test_mixing_draws_and_values_are_the_recorded_ones(name):
    cfg = {"heavy": AugmentConfig(policy="heavy"), "mixup": AugmentConfig(mixup=0.3),
           "both": AugmentConfig(policy="heavy", mixup=0.2)}[name]
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 8, 8, generator=generator), torch.randint(0, 5, (12,), generator=generator)
    weights = torch.arange(x[0].numel()) % 97 + 1
    mix, images, targets = create_mixing(cfg, 3, 5), 0.0, 0.0
    for _ in range(3):
        mixed, soft = mix(x, y, generator)
        images += (mixed.flatten(1).double() * weights).sum().item()
        targets += (soft.double() * torch.arange(1, 6)).sum().item()
    expected_images, expected_targets, next_draw = RECORDED_MIXING[name]
    assert images == pytest.approx(expected_images, rel=1e-6) and targets == pytest.approx(expected_targets, rel=1e-6)
    assert torch.rand(1, generator=generator).item() == next_draw


def test_presets_are_registered_policies_and_copies():
    assert POLICIES.names() == sorted(PRESETS) and POLICIES.create("seed") == PRESETS["seed"]
    POLICIES.create("seed")["p_flip"] = 1.0  # a caller's edit never reaches the preset
    assert PRESETS["seed"]["p_flip"] == 0.5


def test_an_unknown_policy_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'heavy'"):
        resolve(AugmentConfig(policy="heavi"), 3)


def test_an_operation_that_its_values_turn_off_is_not_built():
    assert all(OPERATIONS.create(name, PRESETS["none"]) is None for name in OPERATIONS.names())


def test_the_flip_is_folded_into_a_warp_only_without_a_crop_between():
    warp = {**PRESETS["none"], "p_flip": 0.5, "rotate": 10.0, "p_rotate": 1.0}
    assert OPERATIONS.create("flip", warp) is None  # drawn by the warp, into its sampling grid
    assert OPERATIONS.create("flip", {**warp, "crop_padding": 2}) is not None
