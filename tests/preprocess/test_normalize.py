import pytest
import torch

from cnntricks.preprocess import NORMALIZATIONS, fit_normalization


def test_standardize_gives_zero_mean_unit_std_per_channel():
    images = torch.randint(0, 256, (500, 3, 8, 8), dtype=torch.uint8)
    images[:, 1] //= 4  # channels with different statistics
    out = fit_normalization(images, "standardize")(images)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_center_only_subtracts_the_mean_and_none_keeps_raw_values():
    images = torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8)
    centered = fit_normalization(images, "center")(images)
    assert centered.mean().abs() < 1e-5
    assert centered.max() - centered.min() == pytest.approx((images.max() - images.min()).item() / 255, abs=1e-5)
    raw = fit_normalization(images, "none")(images)
    assert torch.equal(raw, images.float())


def test_statistics_come_only_from_the_images_given():
    train = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    train[5:] = 255
    normalization = fit_normalization(train, "standardize")
    assert normalization.mean == [pytest.approx(0.5)] and normalization.std == [pytest.approx(0.5)]


def test_an_unknown_mode_is_the_registrys_error_with_the_closest_name():
    with pytest.raises(ValueError, match="unknown normalization 'standardise' \\(did you mean 'standardize'\\?\\)"):
        fit_normalization(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), "standardise")


def test_center_is_standardize_without_the_division():
    images = torch.randint(0, 256, (50, 2, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    center, standardize = NORMALIZATIONS.create("center", images), NORMALIZATIONS.create("standardize", images)
    assert center.mean == standardize.mean and center.std == [1.0, 1.0]
