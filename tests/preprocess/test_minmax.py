import pytest
import torch

from cnntricks.preprocess import fit_normalization


def test_minmax_maps_training_min_and_max_to_minus_one_and_one_per_channel():
    images = torch.randint(30, 200, (200, 3, 8, 8), dtype=torch.uint8)
    images[:, 1] //= 4            # channels with different ranges
    images[:, 2] = 77             # a constant channel
    out = fit_normalization(images, "minmax")(images)
    assert torch.allclose(out[:, :2].amin(dim=(0, 2, 3)), -torch.ones(2), atol=1e-6)
    assert torch.allclose(out[:, :2].amax(dim=(0, 2, 3)), torch.ones(2), atol=1e-6)
    assert out[:, 2].abs().max() < 1e-6  # constant channel -> 0, not a division by zero


def test_minmax_statistics_come_from_the_training_images_only():
    train = torch.tensor([[[[50]]], [[[150]]]], dtype=torch.uint8)  # (2, 1, 1, 1)
    normalization = fit_normalization(train, "minmax")
    assert normalization.mean == [pytest.approx(100 / 255)] and normalization.std == [pytest.approx(50 / 255)]
    other = torch.tensor([[[[250]]]], dtype=torch.uint8)
    assert normalization(other).item() == pytest.approx(3.0)  # outside [-1, 1]: not refitted
