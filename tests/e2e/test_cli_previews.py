"""`cnntricks augment --preview` and `cnntricks preprocess --demo`."""
from __future__ import annotations

from PIL import Image


def test_augment_preview_writes_a_png_grid(user, tmp_path):
    out = tmp_path / "preview.png"
    result = user.run("augment", "--preview", "--policy", "seed", "data.source=synthetic", "--out", out)
    assert result.code == 0, result
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[1] > image.size[0]  # one row per operation


def test_augment_preview_refuses_colour_on_gray_data(user, tmp_path):
    result = user.run("augment", "--preview", "data.source=digits", "augment.p_hsv=0.5",
                      "--out", tmp_path / "p.png")
    assert result.code == 2 and "RGB" in result.err


def test_preprocess_demo_writes_the_four_panels(user, tmp_path):
    out = tmp_path / "demo.png"
    result = user.run("preprocess", "--demo", "data.source=digits", "--components", "16", "--out", out)
    assert result.code == 0, result
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]  # panels side by side


def test_actions_are_required(user):
    assert user.run("augment").code == 2
    assert user.run("preprocess").code == 2
