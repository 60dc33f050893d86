import colorsys
import json

import pytest
import torch

from cnntricks.augment.color import (FancyPCA, color_jitter, draw_wei_hsv_parameters, hsv_to_rgb,
                                     rgb_to_hsv, wei_hsv)


def batch(n=32, size=8, channels=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


IDENTITY = dict(power=(1.0, 1.0), factor=(1.0, 1.0), shift=(0.0, 0.0), hue_shift=(0.0, 0.0))


def test_hsv_matches_colorsys_and_round_trips():
    pixels = torch.rand(1, 3, 20, 20, generator=gen(1), dtype=torch.float64)
    pixels[0, :, 0, :3] = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.3, 0.3, 0.3]]).T  # ties, gray
    hsv = rgb_to_hsv(pixels)
    for y in range(20):
        for x in range(20):
            expected = colorsys.rgb_to_hsv(*pixels[0, :, y, x].tolist())
            assert torch.allclose(hsv[0, :, y, x], torch.tensor(expected, dtype=torch.float64), atol=1e-12)
            back = colorsys.hsv_to_rgb(*hsv[0, :, y, x].tolist())
            assert torch.allclose(hsv_to_rgb(hsv)[0, :, y, x], torch.tensor(back, dtype=torch.float64), atol=1e-12)
    single = torch.rand(64, 3, 16, 16, generator=gen(2))
    assert (hsv_to_rgb(rgb_to_hsv(single)) - single).abs().max() < 1e-5
    assert rgb_to_hsv(single)[:, 0].max() < 1


def test_wei_hsv_draws_stay_in_the_seed_ranges_and_reach_both_ends_of_the_power():
    drawn = draw_wei_hsv_parameters(20_000, gen(3))
    for channel in ("saturation", "value"):
        power = drawn[f"{channel}_power"]
        assert power.min() >= 0.25 and power.max() <= 4.0
        assert power.min() < 0.26 and power.max() > 3.9  # both ends reached
        assert 0.45 < (power < 1).float().mean() < 0.55  # log-uniform: 1/4 as likely as 4
        factor, shift = drawn[f"{channel}_factor"], drawn[f"{channel}_shift"]
        assert factor.min() >= 0.7 and factor.max() <= 1.4 and factor.min() < 0.71 and factor.max() > 1.39
        assert shift.min() >= -0.1 and shift.max() <= 0.1 and shift.min() < -0.099 and shift.max() > 0.099
    hue = drawn["hue_shift"]
    assert hue.min() >= -0.1 and hue.max() <= 0.1
    assert not torch.equal(drawn["saturation_power"], drawn["value_power"])  # separate draws


def test_wei_hsv_uses_one_draw_per_image():
    colors = torch.rand(50, 3, 1, 1, generator=gen(4)).expand(50, 3, 6, 6).contiguous()
    out = wei_hsv(colors, gen(5))
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-6)  # still one colour each
    assert not torch.allclose(out, colors, atol=1e-3)
    # hue shift only: every saturated pixel's hue moves by the same amount within an image
    images = hsv_to_rgb(torch.stack((torch.rand(40, 8, 8, generator=gen(6)),
                                     0.3 + 0.7 * torch.rand(40, 8, 8, generator=gen(7)),
                                     0.3 + 0.7 * torch.rand(40, 8, 8, generator=gen(8))), dim=1))
    shifted = wei_hsv(images, gen(9), power=(1, 1), factor=(1, 1), shift=(0, 0), hue_shift=(-0.1, 0.1))
    moved = torch.remainder(rgb_to_hsv(shifted)[:, 0] - rgb_to_hsv(images)[:, 0] + 0.5, 1.0) - 0.5
    spread = moved.flatten(1).max(1).values - moved.flatten(1).min(1).values
    assert spread.max() < 1e-4
    assert moved.abs().max() <= 0.1 + 1e-5 and moved[:, 0, 0].std() > 0.02


def test_wei_hsv_identity_dtypes_reproducibility_and_p():
    images = batch()
    same = wei_hsv(images, gen(), **IDENTITY)
    assert same.dtype == torch.uint8 and (same.int() - images.int()).abs().max() <= 1
    floats = images.float() / 255
    assert torch.allclose(wei_hsv(floats, gen(), **IDENTITY), floats, atol=1e-5)
    a, b = wei_hsv(images, gen(11)), wei_hsv(images, gen(11))
    assert torch.equal(a, b) and not torch.equal(a, wei_hsv(images, gen(12)))
    as_float = wei_hsv(floats, gen(11))
    assert as_float.dtype == torch.float32 and 0 <= as_float.min() and as_float.max() <= 1
    assert (as_float * 255 - a.float()).abs().max() <= 1.0  # uint8 path = float path, rounded
    assert torch.equal(wei_hsv(images, gen(13), p=0.0), images)


def test_color_jitter_zero_strengths_is_identity_and_default_changes_images():
    images = batch()
    assert torch.equal(color_jitter(images, gen(), 0, 0, 0, 0), images)
    floats = images.float() / 255
    assert torch.equal(color_jitter(floats, gen(), 0, 0, 0, 0), floats)
    out = color_jitter(images, gen(14))
    assert out.dtype == torch.uint8 and out.shape == images.shape and not torch.equal(out, images)
    assert torch.equal(out, color_jitter(images, gen(14)))
    # brightness alone scales each image by one factor in [0.6, 1.4]
    dark = 0.01 + 0.7 * floats  # so that no pixel clips at 1 and none is 0
    ratio = color_jitter(dark, gen(15), brightness=0.4, contrast=0, saturation=0, hue=0) / dark
    per_image = ratio.flatten(1)
    assert (per_image.max(1).values - per_image.min(1).values).max() < 1e-5
    assert per_image.min() >= 0.6 - 1e-5 and per_image.max() <= 1.4 + 1e-5 and per_image.std() > 0.1


def test_fancy_pca_offsets_have_covariance_diag_of_point_one_lambda_squared():
    pca = FancyPCA(torch.tensor([0.05, 0.01, 0.002]), torch.linalg.qr(torch.randn(3, 3, generator=gen(16)))[0])
    gray = torch.full((20_000, 3, 2, 2), 0.5)
    out = pca(gray, gen(17))
    offsets = (out - gray).mean(dim=(2, 3)).double()  # (N, 3): one offset per image
    assert torch.allclose(out, gray + offsets.float().view(-1, 3, 1, 1), atol=1e-6)  # same for all pixels
    projected = offsets @ pca.eigenvectors.double()
    covariance = projected.T @ projected / len(projected)
    expected = (0.1 * pca.eigenvalues.double()) ** 2
    assert torch.allclose(covariance.diagonal(), expected, rtol=0.1)
    scale = covariance.diagonal().sqrt()
    correlation = covariance / (scale.view(-1, 1) * scale.view(1, -1))
    assert (correlation - torch.eye(3, dtype=torch.float64)).abs().max() < 0.05  # independent alphas
    as_uint8 = pca((gray * 255).to(torch.uint8), gen(17))
    assert as_uint8.dtype == torch.uint8


def test_fancy_pca_fit_recovers_known_covariance_and_round_trips_through_json():
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=gen(18), dtype=torch.float64))[0]
    eigenvalues = torch.tensor([0.01, 0.004, 0.001], dtype=torch.float64)
    noise = torch.randn(100, 40, 40, 3, generator=gen(19), dtype=torch.float64) * eigenvalues.sqrt()
    pixels = 0.5 + noise @ rotation.T  # covariance = R diag(eigenvalues) R^T
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
    pca = FancyPCA.fit(images, max_pixels=100_000, generator=gen(20))
    assert torch.allclose(pca.eigenvalues.double(), eigenvalues, rtol=0.05)
    alignment = (rotation.T @ pca.eigenvectors.double()).abs()  # eigenvectors up to sign
    assert torch.allclose(alignment, torch.eye(3, dtype=torch.float64), atol=0.05)
    restored = FancyPCA.from_state_dict(json.loads(json.dumps(pca.state_dict())))
    assert torch.equal(restored.eigenvalues, pca.eigenvalues)
    assert torch.equal(restored.eigenvectors, pca.eigenvectors)
    assert torch.equal(restored(images[:4], gen(21)), pca(images[:4], gen(21)))


def test_gray_images_are_refused_with_advice():
    gray = batch(channels=1)
    pca = FancyPCA(torch.ones(3), torch.eye(3))
    calls = {"wei_hsv": lambda: wei_hsv(gray, gen()), "color_jitter": lambda: color_jitter(gray, gen()),
             "FancyPCA.fit": lambda: FancyPCA.fit(gray), "FancyPCA": lambda: pca(gray, gen())}
    for name, call in calls.items():
        with pytest.raises(ValueError, match="need RGB images \\(3 channels\\), got 1 channel;") as error:
            call()
        assert str(error.value).startswith(name + ":")
        assert "Fashion-MNIST is gray" in str(error.value) and "data.channels=3" in str(error.value)
    with pytest.raises(ValueError, match="need RGB"):
        rgb_to_hsv(gray.float())


def test_wei_hsv_with_probability_changes_the_chosen_images_exactly_as_at_p_1():
    # Only the chosen images are converted (speed); each must match the full computation.
    from cnntricks.augment.color import apply_wei_hsv, apply_with_probability, draw_wei_hsv_parameters
    images = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for p in (0.0, 0.3, 1.0):
        generator = torch.Generator().manual_seed(3)
        expected = apply_with_probability(apply_wei_hsv(images, draw_wei_hsv_parameters(200, generator)),
                                          images, p, generator)
        assert torch.equal(wei_hsv(images, torch.Generator().manual_seed(3), p=p), expected)


def test_fused_chunked_wei_hsv_equals_the_two_step_round_trip_at_any_chunk_size(monkeypatch):
    import cnntricks.augment.color as color
    images = torch.rand(6, 3, 13, 11, generator=gen(21))
    parameters = draw_wei_hsv_parameters(6, gen(22), hue_shift=(-0.5, 0.5))  # wraps both ways
    hsv = rgb_to_hsv(images)
    p = {name: value.view(-1, 1, 1) for name, value in parameters.items()}
    hue = torch.remainder(hsv[:, 0] + p["hue_shift"], 1.0)
    saturation = (hsv[:, 1].pow(p["saturation_power"]) * p["saturation_factor"] + p["saturation_shift"]).clamp(0, 1)
    value = (hsv[:, 2].pow(p["value_power"]) * p["value_factor"] + p["value_shift"]).clamp(0, 1)
    expected = hsv_to_rgb(torch.stack((hue, saturation, value), 1))
    for chunk in (1 << 16, 100, 7):  # whole batch, groups of images, pieces of one image
        monkeypatch.setattr(color, "CHUNK_PIXELS", chunk)
        assert (color.apply_wei_hsv(images, parameters) - expected).abs().max() < 1e-5
        as_uint8 = color.apply_wei_hsv((images * 255).round().to(torch.uint8), parameters)
        assert as_uint8.dtype == torch.uint8


def test_fancy_pca_on_uint8_is_the_float_result_rounded():
    images = batch(64, 6, seed=23)
    pca = FancyPCA.fit(images)
    as_uint8 = pca(images, gen(24), std=3.0)  # large offsets: clamping at both ends is exercised
    as_float = pca(images.float() / 255, gen(24), std=3.0)
    assert as_uint8.dtype == torch.uint8
    assert ((as_uint8.float() - as_float * 255).abs() <= 0.5 + 1e-3).all()
    assert as_uint8.min() == 0 and as_uint8.max() == 255
