"""data.source=letters: A–J rendered from font files, split by font.

The fonts are matplotlib's bundled ones (a dependency, so every machine has the same files): four
DejaVu and four STIX families, seven Computer Modern fonts, and the kinds a font scan must skip:
cmex10 (brackets at A–J), Last Resort (one box for every letter), the STIX size variants and
DejaVu Display (no A–J at all).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from safetensors import safe_open

from cnntricks import config
from cnntricks.data import DataError, load_splits
from cnntricks.data import letters
from cnntricks.data.letters import (CLASSES, Font, find_font_files, font_families, load_letters, render_letters,
                                    split_fonts, usable_fonts)

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@pytest.fixture(scope="module")
def fonts():
    return usable_fonts(find_font_files([FONTS]))


@pytest.fixture
def small(monkeypatch):
    """A few images per letter, so each test renders in well under a second."""
    monkeypatch.setattr(letters, "TRAIN_PER_CLASS", 20)
    monkeypatch.setattr(letters, "TEST_PER_CLASS", 10)


def ink_boxes(images: torch.Tensor) -> torch.Tensor:
    """(N, 4) top, bottom, left, right (inclusive) of the pixels above 64 in uint8 (N, 1, H, W)."""
    ink = images[:, 0] > 64
    rows, cols = ink.any(2), ink.any(1)
    index = torch.arange(images.shape[-1])
    first = lambda mask: torch.where(mask, index, 99).min(1).values  # noqa: E731
    last = lambda mask: torch.where(mask, index, -1).max(1).values  # noqa: E731
    return torch.stack([first(rows), last(rows), first(cols), last(cols)], 1)


def test_the_scan_keeps_text_fonts_and_skips_symbols_boxes_and_empty_ones(fonts):
    usable, skipped = fonts
    names = {font.path.name for font in usable}
    assert {"DejaVuSans.ttf", "DejaVuSerif-Italic.ttf", "STIXGeneralBol.ttf", "cmr10.ttf", "cmtt10.ttf"} <= names
    reasons = {Path(line.split(": ")[0]).name: line.split(": ", 1)[1] for line in skipped}
    assert "look like letters" in reasons["cmex10.ttf"]  # brackets drawn at A–J
    assert "same glyph" in reasons["LastResortHE-Regular.ttf"]  # one box for every letter
    assert "empty" in reasons["STIXSizOneSymReg.ttf"] and "empty" in reasons["DejaVuSansDisplay.ttf"]
    assert len(usable) + len(skipped) == len(find_font_files([FONTS]))
    assert [font.path for font in usable] == sorted(font.path for font in usable)  # a fixed order


def test_images_are_white_letters_on_black_centred_in_a_20_to_24_pixel_box(fonts):
    images, labels = render_letters(fonts[0], 30, torch.Generator().manual_seed(0))
    assert images.shape == (300, 1, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [30] * 10
    border = torch.cat([images[:, 0, [0, -1]].flatten(1), images[:, 0, :, [0, -1]].flatten(1)], 1)
    assert (border == 0).float().mean() > 0.9 and int(images.max()) == 255  # black around, white ink
    top, bottom, left, right = ink_boxes(images).T
    longer = torch.maximum(bottom - top, right - left) + 1
    assert longer.min() >= 18 and longer.max() <= 25  # BOX = (20, 24), give or take the antialiased edge
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    assert (centre_x - 13.5).abs().max() <= 3.5 and (centre_y - 13.5).abs().max() <= 3.5  # MAX_SHIFT = 2
    assert (centre_x - 13.5).abs().mean() > 0.5  # shifted, not all in the middle


def test_rendering_is_deterministic_for_a_seed_and_differs_for_another(fonts):
    first = render_letters(fonts[0], 5, torch.Generator().manual_seed(3))
    again = render_letters(fonts[0], 5, torch.Generator().manual_seed(3))
    other = render_letters(fonts[0], 5, torch.Generator().manual_seed(4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], other[1])
    assert (first[0] != other[0]).flatten(1).any(1).float().mean() > 0.9


def test_training_images_follow_the_seed_and_the_test_split_does_not(data_config, small, tmp_path):
    runs = [load_letters(data_config(source="letters", root=str(FONTS), cache_dir=str(tmp_path / name)), seed)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    (train_a, test_a), (train_b, _), (train_c, test_c) = runs
    assert train_a.classes == CLASSES == ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]
    assert train_a.images.shape == (200, 1, 28, 28) and test_a.images.shape == (100, 1, 28, 28)
    assert torch.equal(train_a.images, train_b.images) and not torch.equal(train_a.images, train_c.images)
    assert torch.equal(test_a.images, test_c.images)  # scored on the same images whatever the seed


def test_no_font_is_in_both_splits_nor_any_family(fonts):
    usable, _ = fonts
    train, test = split_fonts(usable, 0.2)
    assert sorted(font.path for font in train + test) == [font.path for font in usable]
    assert not {font.path for font in train} & {font.path for font in test}
    assert not {font.family for font in train} & {font.family for font in test}
    assert 1 <= len(test) <= 0.2 * len(usable)
    assert split_fonts(usable, 0.2) == (train, test)  # the same every time


def test_the_cache_records_disjoint_font_lists(data_config, small, isolated_cache):
    load_letters(data_config(source="letters", root=str(FONTS), cache_dir=None), 0)
    (cache_file,) = (isolated_cache / "letters").glob("*.safetensors")
    with safe_open(str(cache_file), framework="pt") as cached:
        metadata = cached.metadata()
    train, test = json.loads(metadata["train_fonts"]), json.loads(metadata["test_fonts"])
    assert train and test and not set(train) & set(test)


def font(family: str, upright: np.ndarray) -> Font:
    return Font(Path(f"/fonts/{family}.ttf"), family, [], upright)


def test_families_join_by_name_and_by_near_identical_glyphs():
    rng = np.random.default_rng(0)
    design = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    other = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    copy = design.copy()
    copy[0, 0, :5] ^= 1  # a re-release of the same outlines: a few pixels apart
    fonts = [font("Nimbus Sans", design), font("FreeSans", copy), font("Other", other), font("Other", design[::-1])]
    assert sorted(map(sorted, font_families(fonts))) == [[0, 1], [2, 3]]


def test_one_family_is_not_enough_for_a_split_by_font(data_config, tmp_path):
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        shutil.copy(FONTS / name, tmp_path / name)
    with pytest.raises(DataError, match="of one family \\(DejaVu Sans\\).*at least 2 families"):
        load_letters(data_config(source="letters", root=str(tmp_path)), 0)


def test_no_fonts_is_an_error_that_says_what_to_install(data_config, monkeypatch, tmp_path):
    monkeypatch.setattr(letters, "FONT_FOLDERS", (str(tmp_path / "empty"), str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("not a font")
    with pytest.raises(DataError, match="no font files .*apt-get install fonts-dejavu-core"):
        load_letters(data_config(source="letters"), 0)
    with pytest.raises(DataError, match="data.root: .* is not a folder"):
        load_letters(data_config(source="letters", root=str(tmp_path / "missing")), 0)
    for name in ("STIXSizOneSymReg.ttf", "LastResortHE-Regular.ttf"):
        shutil.copy(FONTS / name, tmp_path / "empty" / name)
    (tmp_path / "empty" / "broken.ttf").write_bytes(b"not a font either")
    with pytest.raises(DataError, match="none of the 3 font files .* can draw A–J.*apt-get install"):
        load_letters(data_config(source="letters"), 0)


def test_data_subset_gets_as_many_training_images_as_it_asks(data_config, small, recwarn):
    splits = load_splits(data_config(source="letters", root=str(FONTS), subset=300), 0)  # > 10 x 20 rendered by default
    assert len(splits.train) == 300 and splits.train.class_counts().tolist() == [30] * 10
    assert len(splits.test) == 100 and not recwarn.list


def test_a_second_load_reads_the_cache_and_a_damaged_one_renders_again(data_config, small, monkeypatch,
                                                                        isolated_cache):
    cfg = data_config(source="letters", root=str(FONTS), cache_dir=None)
    train, test = load_letters(cfg, 0)
    (cache_file,) = (isolated_cache / "letters").glob("*.safetensors")
    real_render = letters.render_letters

    def refuse(*args):
        raise AssertionError("rendered although the cache holds these images")
    monkeypatch.setattr(letters, "render_letters", refuse)
    assert torch.equal(load_letters(cfg, 0)[0].images, train.images)
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    monkeypatch.setattr(letters, "render_letters", real_render)
    assert torch.equal(load_letters(cfg, 0)[1].images, test.images)


def test_rendering_thousands_of_glyphs_takes_seconds(fonts):
    start = time.perf_counter()
    render_letters(fonts[0], 200, torch.Generator().manual_seed(0))
    # 2000 images: 0.3 s on an idle machine; the bound leaves room for a busy CI runner.
    assert time.perf_counter() - start < 5


def test_a_small_network_trains_on_it_through_the_python_api(small, monkeypatch, tmp_path):
    from cnntricks.session import train
    monkeypatch.setattr(letters, "TRAIN_PER_CLASS", 60)
    cfg = config.load(None, ["data.source=letters", f"data.root={FONTS}", "model.width=8", "model.depth=2",
                             "train.epochs=3", "train.threads=1", "optim.batch_size=32", "train.monitor=off",
                             "doctor.mode=off"])
    summary = train(cfg, tmp_path / "run", progress=False, report=False)
    assert summary["classes"] == CLASSES and summary["split_sizes"]["test"] == 100
    assert summary["test_acc"] > 0.3  # 10 classes: chance is 0.1, on fonts it never saw
