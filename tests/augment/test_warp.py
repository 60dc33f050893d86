import math

import pytest
import torch

from cnntricks.augment.warp import WarpParameters, draw_warp, random_warp, sampling_grid, warp


def identity(n):
    zeros = torch.zeros(n)
    return WarpParameters(zeros, zeros, zeros, torch.ones(n), zeros, zeros, zeros)


def with_(n, **values):
    params = identity(n)
    for name, value in values.items():
        setattr(params, name, torch.full((n,), float(value)))
    return params


def blob(size, centre_x, centre_y, sigma):  # (1, 1, size, size) Gaussian, pixel coordinates
    coords = torch.arange(size, dtype=torch.float64)
    x, y = coords.view(1, -1), coords.view(-1, 1)
    return torch.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * sigma**2)).view(1, 1, size, size)


def test_zero_strength_warp_is_identity_for_uint8_and_float():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 12, 17), dtype=torch.uint8)
    assert torch.equal(random_warp(images, generator), images)
    floats = torch.rand(8, 3, 12, 17)
    out = random_warp(floats, generator, fill="reflect")
    assert out.dtype == torch.float32 and torch.allclose(out, floats, atol=1e-5)


def test_whole_pixel_translation_is_a_shift():
    images = torch.rand(4, 2, 16, 20)
    out = warp(images, with_(4, translate_x=3 / 20, translate_y=-2 / 16))  # right 3, up 2
    assert torch.allclose(out[..., :-2, 3:], images[..., 2:, :-3], atol=1e-5)
    assert out[..., :, :3].abs().max() < 1e-5 and out[..., -2:, :].abs().max() < 1e-5  # zero fill


def test_rotation_by_90_degrees_is_rot90():
    images = torch.rand(3, 3, 15, 15)
    out = warp(images, with_(3, angle=90.0))
    assert torch.allclose(out, torch.rot90(images, 1, (-2, -1)), atol=1e-4)
    wide = torch.rand(2, 1, 12, 20)  # non-square: rotation stays rigid (aspect-corrected)
    out = warp(wide, with_(2, angle=90.0))[..., 4:16]
    assert torch.allclose(out, torch.rot90(wide[..., 4:16], 1, (-2, -1)), atol=1e-4)
    back = warp(images, with_(3, angle=-90.0))
    assert torch.allclose(back, torch.rot90(images, -1, (-2, -1)), atol=1e-4)


def test_one_composed_warp_matches_analytic_target_better_than_sequential_warps():
    size, sigma, angle, zoom = 48, 4.0, 30.0, 1.25
    shift_x, shift_y = 2.5 / size, -1.7 / size  # fractions of the size, sub-pixel
    image = blob(size, 30.0, 20.0, sigma).float()
    # Analytic target: the blob centre moves by T·R·S about the image centre, its width by S.
    centre, theta = (size - 1) / 2, math.radians(angle)
    dx, dy = (30.0 - centre) * zoom, (20.0 - centre) * zoom
    new_x = centre + math.cos(theta) * dx + math.sin(theta) * dy + shift_x * size
    new_y = centre - math.sin(theta) * dx + math.cos(theta) * dy + shift_y * size
    target = blob(size, new_x, new_y, sigma * zoom).float()

    single = warp(image, with_(1, angle=angle, scale=zoom, translate_x=shift_x, translate_y=shift_y))
    sequential = warp(image, with_(1, scale=zoom))
    sequential = warp(sequential, with_(1, angle=angle))
    sequential = warp(sequential, with_(1, translate_x=shift_x, translate_y=shift_y))
    inner = (..., slice(8, -8), slice(8, -8))
    single_error = (single - target)[inner].abs().max()
    sequential_error = (sequential - target)[inner].abs().max()
    assert single_error < 0.03 and sequential_error < 0.08  # both are the same transform
    assert single_error < sequential_error  # resampling once blurs less


def test_lens_moves_the_corner_sample_inward_for_pincushion_and_outward_for_barrel():
    corner = sampling_grid(identity(1), 9, 9)[0, 0, 0]  # top-left pixel centre
    r_out = corner.norm()
    for k in (0.05, -0.05):
        r_in = sampling_grid(with_(1, lens=k), 9, 9)[0, 0, 0].norm()
        assert (r_in < r_out) if k > 0 else (r_in > r_out)
        assert torch.isclose(r_in, r_out * (1 - k * r_out**2), atol=1e-6)  # the stated model
        # Brown's model to first order: 0.02 in normalized units at this corner (0.3 px at 28x28)
        assert torch.isclose(r_in * (1 + k * r_in**2), r_out, atol=0.03)
    centre = sampling_grid(with_(1, lens=0.1), 9, 9)[0, 4, 4]
    assert torch.allclose(centre, torch.zeros(2), atol=1e-6)  # centre stays put


def test_fill_modes_differ_at_the_border():
    images = torch.randint(0, 256, (2, 3, 10, 10), dtype=torch.uint8)
    params = with_(2, translate_x=3 / 10)  # exposes 3 columns on the left
    zeros, reflect, edge = (warp(images, params, fill=f) for f in ("zeros", "reflect", "edge"))
    assert torch.all(zeros[..., :3] == 0)
    assert torch.equal(edge[..., :3], images[..., :1].expand(-1, -1, -1, 3))
    assert torch.equal(reflect[..., :3], images[..., :3].flip(-1))
    assert torch.equal(zeros[..., 3:], edge[..., 3:]) and torch.equal(zeros[..., 3:], reflect[..., 3:])
    with pytest.raises(ValueError, match="fill must be one of"):
        warp(images, params, fill="wrap")


STRONG = dict(translate=0.1, rotate=20.0, scale=(0.8, 1.25), stretch=0.2, shear=10.0, lens=0.05)


def test_reproducible_from_seed_and_parameters_differ_across_the_batch():
    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    a = random_warp(images, torch.Generator().manual_seed(7), **STRONG)
    b = random_warp(images, torch.Generator().manual_seed(7), **STRONG)
    c = random_warp(images, torch.Generator().manual_seed(8), **STRONG)
    assert torch.equal(a, b) and not torch.equal(a, c)
    params = draw_warp(16, torch.Generator().manual_seed(7), **STRONG)
    for name in ("translate_x", "translate_y", "angle", "scale", "stretch", "shear", "lens"):
        values = getattr(params, name)
        assert values.unique().numel() == 16, name
    assert params.angle.abs().max() <= 20 and params.scale.min() >= 0.8 and params.scale.max() <= 1.25
    assert params.lens.abs().max() <= 0.05 and params.shear.abs().max() <= 10


@pytest.mark.parametrize("op", ["translate", "rotate", "scale", "stretch", "shear", "lens"])
def test_probability_zero_turns_each_operation_off(op):
    probabilities = {f"p_{name}": 1.0 for name in STRONG}
    strengths = {op: STRONG[op]}
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8)
    off = random_warp(images, generator, **strengths, **{**probabilities, f"p_{op}": 0.0})
    assert torch.equal(off, images)
    on = random_warp(images, generator, **strengths, **probabilities)
    assert not torch.equal(on, images)
    half = draw_warp(2000, generator, **strengths, **{f"p_{op}": 0.5})
    changed = sum((getattr(half, f.name) != (1.0 if f.name == "scale" else 0.0)) for f in
                  WarpParameters.__dataclass_fields__.values()).bool()
    assert 850 < int(changed.sum()) < 1150


def test_flip_folded_into_the_grid_equals_flipping_first_and_chunks_change_nothing(monkeypatch):
    import sys
    warp_module = sys.modules["cnntricks.augment.warp"]  # the package's `warp` is the function
    images = torch.randint(0, 256, (10, 3, 9, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    params = draw_warp(10, torch.Generator().manual_seed(5), translate=0.1, rotate=20, shear=10, lens=0.05)
    flip = torch.arange(10) % 3 == 0
    flipped_first = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    expected = warp(flipped_first.double(), params, fill="reflect")
    for chunk in (1 << 16, 200, 1):  # one call, groups of images, one image at a time
        monkeypatch.setattr(warp_module, "CHUNK_PIXELS", chunk)
        folded = warp(images.double(), params, fill="reflect", flip=flip)
        assert (folded - expected).abs().max() < 1e-9
        assert torch.equal(warp(images, params, flip=flip), warp(images, params, flip=flip))
