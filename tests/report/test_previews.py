import pytest
import torch
from PIL import Image

from cnntricks.report.augment_preview import default_operations, draw_augment_preview, preview_layout
from cnntricks.report.whitening_demo import draw_whitening_demo

COLOR_ROWS = ("Wei HSV", "color jitter", "fancy PCA")


def blobs(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, channels, size, size): one soft coloured blob per image on a dark ground."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    cx, cy = (torch.rand(n, 1, 1, generator=g) * size for _ in range(2))
    blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (size * 2)).unsqueeze(1)
    color = 0.3 + 0.7 * torch.rand(n, channels, 1, 1, generator=g)
    return (255 * (0.1 + 0.9 * blob * color)).round().to(torch.uint8)


def assert_real_png(path, size=None):
    with Image.open(path) as image:
        image.load()
        if size is not None:
            assert image.size == size
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 16, "the PNG is blank or nearly so"


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_preview_has_a_row_per_operation_below_the_originals(tmp_path, channels, size):
    images = blobs(20, channels, size)
    operations = default_operations(channels, images)
    operations["policy: identity"] = lambda x, g: x
    path = draw_augment_preview(images, operations, tmp_path / "preview.png", examples=5, title="t")
    layout = preview_layout(len(operations), 5, size, size)
    assert layout.rows == len(operations) + 1 and layout.columns == 5
    assert_real_png(path, layout.size_pixels)


def test_preview_layout_grows_by_one_row_per_operation():
    one, two = preview_layout(1, 6, 28, 28), preview_layout(2, 6, 28, 28)
    assert (one.rows, two.rows) == (2, 3)
    assert two.size_pixels[1] > one.size_pixels[1] and two.size_pixels[0] == one.size_pixels[0]


def test_color_operations_only_for_rgb():
    gray, rgb = default_operations(1), default_operations(3)
    assert not any(name.startswith(COLOR_ROWS) for name in gray)
    assert all(any(name.startswith(color) for name in rgb) for color in COLOR_ROWS)
    assert set(gray) < set(rgb)


def test_every_default_operation_changes_some_image_and_keeps_shape():
    images = blobs(8, 3, 32)
    for name, operation in default_operations(3).items():
        out = operation(images.clone(), torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.dtype == torch.uint8, name
        assert not torch.equal(out, images), f"{name} left every image unchanged"


def test_preview_rows_are_repeatable_for_a_seed(tmp_path):
    images = blobs(6, 1, 28)
    operations = {"rotate": default_operations(1)["rotate (±20°)"]}
    first = draw_augment_preview(images, operations, tmp_path / "a.png", seed=3).read_bytes()
    assert draw_augment_preview(images, operations, tmp_path / "b.png", seed=3).read_bytes() == first
    assert draw_augment_preview(images, operations, tmp_path / "c.png", seed=4).read_bytes() != first


def test_preview_names_an_operation_that_breaks_the_contract(tmp_path):
    with pytest.raises(ValueError, match="'to float'"):
        draw_augment_preview(blobs(4, 1, 28), {"to float": lambda x, g: x.float()}, tmp_path / "p.png")


@pytest.mark.parametrize("channels,size,components", [(1, 28, 144), pytest.param(3, 32, 64, marks=pytest.mark.slow)])
def test_whitening_demo_writes_four_panels(tmp_path, channels, size, components):
    path = draw_whitening_demo(blobs(200, channels, size), tmp_path / "demo.png", components=components)
    assert_real_png(path)
    with Image.open(path) as image:
        width, height = image.size
    assert width > 3 * height  # four panels side by side


def test_whitening_demo_rejects_more_components_than_dimensions(tmp_path):
    with pytest.raises(ValueError, match=r"components=785 .* D = C\*H\*W = 784"):
        draw_whitening_demo(blobs(10, 1, 28), tmp_path / "demo.png", components=785)
    assert not (tmp_path / "demo.png").exists()
