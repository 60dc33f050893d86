import pytest
import torch
import torch.nn.functional as F

from cnntricks.augment.mix import cutmix, cutout, mixup, random_erasing, sample_beta, soft_cross_entropy


def positive_batch(n=64, size=24):  # values 1..255 so an erased pixel (0) is recognisable
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8)


def rectangle_of(changed):  # changed: (H, W) bool -> (top, left, height, width), asserts a rectangle
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    top, left = int(rows[0]), int(cols[0])
    height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    assert changed[top:top + height, left:left + width].all()
    assert int(changed.sum()) == height * width  # nothing changed outside the box
    return top, left, height, width


def test_random_erasing_changes_one_rectangle_per_erased_image_within_area_bounds():
    images = positive_batch(200)
    out = random_erasing(images, torch.Generator().manual_seed(0), p=0.5)
    changed = out != images  # (N, C, H, W)
    assert torch.equal(changed, changed[:, :1].expand_as(changed))  # same box in every channel
    erased = changed.flatten(1).any(1)
    assert 70 < int(erased.sum()) < 130
    assert torch.all(out[changed] == 0)
    for n in erased.nonzero().flatten().tolist():
        _, _, height, width = rectangle_of(changed[n, 0])
        fraction = height * width / 24**2
        assert 0.02 * 0.8 <= fraction <= 0.33 * 1.2  # rounding sides to whole pixels
        assert 0.3 / 1.5 <= height / width <= 3.3 * 1.5


def test_probability_zero_is_identity_and_erasing_is_reproducible():
    images = positive_batch()
    assert torch.equal(random_erasing(images, torch.Generator().manual_seed(1), p=0.0), images)
    assert torch.equal(cutout(images, torch.Generator().manual_seed(1), p=0.0), images)
    a = random_erasing(images, torch.Generator().manual_seed(2), p=1.0)
    b = random_erasing(images, torch.Generator().manual_seed(2), p=1.0)
    c = random_erasing(images, torch.Generator().manual_seed(3), p=1.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cutout_zeroes_a_clipped_square():
    images = positive_batch(100, size=16)
    out = cutout(images, torch.Generator().manual_seed(4), size=8)
    changed = out != images
    for n in range(100):
        top, left, height, width = rectangle_of(changed[n, 0])
        assert height <= 8 and width <= 8
        assert height == 8 or top == 0 or top + height == 16  # smaller only when clipped
        assert width == 8 or left == 0 or left + width == 16
    assert (changed[:, 0].flatten(1).sum(1) < 64).any()  # some squares hang over the edge


def test_beta_sampler_matches_the_beta_moments():
    for alpha in (0.2, 1.0, 2.0):
        samples = sample_beta(alpha, alpha, 20000, torch.Generator().manual_seed(5))
        assert samples.min() >= 0 and samples.max() <= 1
        variance = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
        assert abs(samples.mean() - 0.5) < 0.01
        assert abs(samples.var() - variance) < 0.05 * variance


def test_mixup_targets_sum_to_one_and_images_are_the_same_convex_combination():
    n = 32
    images, labels = torch.rand(n, 3, 8, 8), torch.arange(n)  # label i marks image i
    mixed, targets = mixup(images, labels, n, torch.Generator().manual_seed(6), alpha=0.4)
    assert targets.shape == (n, n) and torch.allclose(targets.sum(1), torch.ones(n))
    for i in range(n):
        weights = targets[i]
        expected = (weights.view(-1, 1, 1, 1) * images).sum(0)  # the targets name the blend
        assert torch.allclose(mixed[i], expected, atol=1e-5)
        assert int((weights > 0).sum()) <= 2
    lam = targets.max(1).values
    assert lam.unique().numel() > 1  # one lambda per image
    again, _ = mixup(images, labels, n, torch.Generator().manual_seed(6), alpha=0.4)
    assert torch.equal(mixed, again)
    with pytest.raises(TypeError, match="must be float"):
        mixup(images.to(torch.uint8), labels, n, torch.Generator())


def test_cutmix_target_weights_equal_the_pasted_pixel_fractions():
    n, size = 32, 16
    # Image i is filled with the value i + 1, so each pixel names the image it came from.
    images = (torch.arange(n, dtype=torch.uint8) + 1).view(-1, 1, 1, 1).expand(n, 3, size, size).contiguous()
    labels = torch.arange(n)
    mixed, targets = cutmix(images, labels, n, torch.Generator().manual_seed(7))
    assert mixed.dtype == torch.uint8 and torch.allclose(targets.sum(1), torch.ones(n))
    source = mixed[:, 0].long() - 1  # (N, H, W) index of the image each pixel came from
    fractions = F.one_hot(source, n).float().mean((1, 2))  # (N, n) pixel share of each source
    assert torch.allclose(targets, fractions, atol=1e-6)
    for i in range(n):
        pasted = source[i] != i
        if pasted.any():
            rectangle_of(pasted)  # one box
    again, _ = cutmix(images, labels, n, torch.Generator().manual_seed(7))
    assert torch.equal(mixed, again)


def test_soft_cross_entropy_matches_pytorch():
    logits, labels = torch.randn(16, 10), torch.randint(0, 10, (16,))
    one_hot = F.one_hot(labels, 10).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels), atol=1e-6)
    soft = torch.softmax(torch.randn(16, 10), 1)
    assert torch.allclose(soft_cross_entropy(logits, soft), F.cross_entropy(logits, soft), atol=1e-6)
