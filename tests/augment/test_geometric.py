import torch

from cnntricks.augment import create_policy, flip_horizontal, random_crop
from cnntricks.config import AugmentConfig


def batch(n=64, channels=3, size=8):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def test_flip_mirrors_about_half_the_images_and_twice_is_identity():
    images = batch(1000)
    flipped = flip_horizontal(images, torch.Generator().manual_seed(0), p=0.5)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    unchanged = (flipped == images).flatten(1).all(1)
    assert torch.all(mirrored | unchanged)
    assert 400 < int(mirrored.sum()) < 600
    again = flip_horizontal(flipped, torch.Generator().manual_seed(0), p=0.5)
    assert torch.equal(again, images)  # same draws: each mirrored image is mirrored back


def test_random_crop_is_a_shift_with_zero_fill():
    images = batch(200, size=10)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(1))
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(20):  # every crop is one of the 25 windows of the padded image
        windows = [padded[n, :, dy:dy + 10, dx:dx + 10] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(cropped[n], w) for w in windows)
    assert not torch.equal(cropped, images)
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_policies_are_reproducible_from_the_generator_seed():
    images = batch()
    for policy in ("none", "flip", "standard"):
        augment = create_policy(AugmentConfig(policy=policy))
        a = augment(images, torch.Generator().manual_seed(5))
        b = augment(images, torch.Generator().manual_seed(5))
        assert torch.equal(a, b)
    assert torch.equal(create_policy(AugmentConfig(policy="none"))(images, torch.Generator()), images)
