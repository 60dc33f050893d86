import numpy as np
import torch
from PIL import Image

from cnntricks.data.convert import composite_on_white, resize_images, to_channels


def random_images(n, channels, size, seed=0):
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def test_rgb_to_gray_is_pillows_itu_601_luma():
    images = random_images(3, 3, 9)
    gray = to_channels(images, 1)
    for image, ours in zip(images, gray):
        pillow = np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").convert("L"))
        assert np.array_equal(ours[0].numpy(), pillow)


def test_luma_weights_are_0_299_0_587_0_114():
    pure = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8).view(3, 3, 1, 1)
    assert to_channels(pure, 1).flatten().tolist() == [76, 150, 29]  # round(255 * w)


def test_gray_to_rgb_repeats_and_none_keeps():
    gray = random_images(2, 1, 4)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 4) and rgb.is_contiguous()
    assert all(torch.equal(rgb[:, c], gray[:, 0]) for c in range(3))
    assert to_channels(gray, None) is gray and to_channels(gray, 1) is gray


def test_composite_on_white_matches_pillow():
    rgba = random_images(2, 4, 6, seed=1)
    ours = composite_on_white(rgba)
    for image, result in zip(rgba, ours):
        source = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGBA")
        white = Image.new("RGBA", source.size, (255, 255, 255, 255))
        pillow = np.asarray(Image.alpha_composite(white, source).convert("RGB")).transpose(2, 0, 1)
        assert np.abs(result.numpy().astype(int) - pillow).max() <= 1


def test_resize_keeps_flat_images_flat_and_crops_to_the_aspect():
    flat = torch.full((2, 1, 10, 10), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(flat, (4, 4)), torch.full((2, 1, 4, 4), 77, dtype=torch.uint8))
    wide = torch.zeros(1, 1, 4, 12, dtype=torch.uint8)
    wide[..., 4:8] = 200  # a bright centre between dark sides: the centre crop keeps only it
    assert torch.equal(resize_images(wide, (2, 2)), torch.full((1, 1, 2, 2), 200, dtype=torch.uint8))
    assert resize_images(flat, (10, 10)) is flat
