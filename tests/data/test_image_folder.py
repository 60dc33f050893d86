import os
import warnings

import pytest
import torch
from data_helpers import save_image, save_truncated_jpeg
from PIL import Image

from cnntricks.data import DataError, DataWarning, load_splits
from cnntricks.data import image_folder
from cnntricks.data.image_folder import load_image_folder


def make_mixed_folder(root):
    """Three classes of 8x8 images in every mode the decoder handles, plus files it must skip."""
    save_image(root / "cat" / "rgb.png")
    save_image(root / "cat" / "photo.jpg")
    save_image(root / "cat" / "nested" / "deeper.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 4, 8))  # left half fully transparent blue
    rgba.save(root / "cat" / "rgba.png")
    save_image(root / "dog" / "gray.bmp", mode="L", color=90)
    save_image(root / "dog" / "palette.png", mode="P")
    save_image(root / "dog" / "UPPER.JPEG")
    save_image(root / "fox" / "a.png")
    save_image(root / "fox" / "b.png")
    save_image(root / "fox" / "c.png")
    save_truncated_jpeg(root / "cat" / "broken.jpg", size=(8, 8))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")
    save_image(root / ".hidden" / "ignored.png")
    save_image(root / "cat" / ".thumbs" / "ignored.png")
    return root


def test_one_level_folder_decodes_every_mode_and_skips_the_bad_files(tmp_path, data_config):
    root = make_mixed_folder(tmp_path / "photos")
    with pytest.warns(DataWarning) as caught:
        train, test = load_image_folder(data_config(root=str(root), test_fraction=0.3), 0)
    message = str(caught[0].message)
    assert "2 of 12 files" in message and "cat/broken.jpg" in message and "dog/notes.txt" in message
    assert ".DS_Store" not in message and "ignored.png" not in message
    assert train.classes == ["cat", "dog", "fox"]
    assert len(train) + len(test) == 10 and len(test) == 3
    assert train.images.shape[1:] == (3, 8, 8)
    assert sorted((train.class_counts() + test.class_counts()).tolist()) == [3, 3, 4]


def test_rgba_is_composited_on_white_and_gray_is_repeated(tmp_path, data_config):
    root = tmp_path / "modes"
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 4, 8))
    save_image(root / "a" / "x.png").unlink()
    for name in ("x.png", "x2.png"):  # two per class: a carved test split never takes a class's only image
        rgba.save(root / "a" / name)
        save_image(root / "b" / name.replace("x", "y").replace(".png", ".bmp"), mode="L", color=90)
    splits = load_splits(data_config(source="image-folder", root=str(root), val_fraction=0, test_fraction=0.5), 0)
    images = {int(label): image for label, image in
              zip(torch.cat([splits.train.labels, splits.test.labels]), torch.cat([splits.train.images, splits.test.images]))}
    assert images[0][:, :, :4].unique().tolist() == [255]  # transparent -> white
    assert images[0][:, 0, 4].tolist() == [255, 0, 0]  # opaque red stays red
    assert images[1].unique().tolist() == [90]  # gray on all three channels


def test_channels_1_uses_pillows_luma(tmp_path, data_config):
    root = tmp_path / "luma"
    for index in range(2):  # two per class: a carved test split never takes a class's only image
        save_image(root / "a" / f"x{index}.png", color=(200, 100, 50))
        save_image(root / "b" / f"y{index}.png", color=(10, 20, 30))
    train, test = load_image_folder(data_config(root=str(root), channels=1, test_fraction=0.5), 0)
    values = sorted(torch.cat([train.images, test.images]).flatten().unique().tolist())
    expected = sorted(Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in [(200, 100, 50), (10, 20, 30)])
    assert values == expected and train.channels == 1


def test_strict_makes_bad_files_an_error_that_lists_them_all(tmp_path, data_config):
    root = make_mixed_folder(tmp_path / "photos")
    with pytest.raises(DataError, match="data.strict=false") as caught:
        load_image_folder(data_config(root=str(root), strict=True), 0)
    message = str(caught.value)
    assert "2 of 12 files" in message and "(1 unreadable image, 1 other file)" in message
    assert "cat/broken.jpg: cannot decode it" in message and "truncated" in message.lower()
    assert "dog/notes.txt: not an image file" in message


def test_images_of_different_sizes_need_image_size(tmp_path, data_config):
    root = tmp_path / "sizes"
    for suffix in ("", "2"):  # two per class: a carved test split never takes a class's only image
        save_image(root / "a" / f"small{suffix}.png", size=(8, 8))
        save_image(root / "b" / f"wide{suffix}.png", size=(20, 10))
    with pytest.raises(DataError, match="data.image_size=N") as caught:
        load_image_folder(data_config(root=str(root)), 0)
    assert "8x8" in str(caught.value) and "10x20" in str(caught.value)
    train, test = load_image_folder(data_config(root=str(root), image_size=6, test_fraction=0.5), 0)
    assert train.images.shape[1:] == test.images.shape[1:] == (3, 6, 6)


def test_train_and_test_folders_are_used_as_given(tmp_path, data_config):
    root = tmp_path / "split"
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("ant", "bee"):
            for i in range(count):
                save_image(root / split / cls / f"{i}.png")
    train, test = load_image_folder(data_config(root=str(root)), 0)
    assert (len(train), len(test)) == (6, 4) and train.classes == ["ant", "bee"]
    assert test.class_counts().tolist() == [2, 2]


def test_val_serves_as_test_or_joins_training(tmp_path, data_config):
    root = tmp_path / "split"
    for split in ("train", "val"):
        for cls in ("ant", "bee"):
            save_image(root / split / cls / "0.png")
    train, test = load_image_folder(data_config(root=str(root)), 0)
    assert (len(train), len(test)) == (2, 2)
    for cls in ("ant", "bee"):
        save_image(root / "test" / cls / "0.png")
        save_image(root / "test" / cls / "1.png")
    train, test = load_image_folder(data_config(root=str(root)), 0)
    assert (len(train), len(test)) == (4, 4)


def test_train_folder_only_gets_a_carved_test_split(tmp_path, data_config):
    root = tmp_path / "split"
    for cls in ("ant", "bee"):
        for i in range(5):
            save_image(root / "train" / cls / f"{i}.png")
    train, test = load_image_folder(data_config(root=str(root), test_fraction=0.2), 0)
    assert (len(train), len(test)) == (8, 2) and train.classes == ["ant", "bee"]


def test_a_test_class_missing_from_train_is_an_error(tmp_path, data_config):
    root = tmp_path / "split"
    save_image(root / "train" / "ant" / "0.png")
    save_image(root / "test" / "ant" / "0.png")
    save_image(root / "test" / "wasp" / "0.png")
    with pytest.raises(DataError, match="class 'wasp' is in"):
        load_image_folder(data_config(root=str(root)), 0)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder"),
    ("no-classes", "no class folders"),
    ("empty-class", "has no images"),
    ("only-bad-files", "no readable training images for class"),
    ("none", "needs a folder"),
])
def test_wrong_layouts_say_what_and_where(tmp_path, data_config, case, message):
    root = tmp_path / "root"
    if case == "file":
        root.write_text("x")
    elif case == "no-classes":
        save_image(root / "loose.png")
    elif case == "empty-class":
        save_image(root / "full" / "0.png")
        (root / "empty").mkdir()
    elif case == "only-bad-files":
        save_image(root / "good" / "0.png")
        save_truncated_jpeg(root / "bad" / "0.jpg")
    cfg = data_config(root=None if case == "none" else str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=message) as caught:
            load_image_folder(cfg, 0)
    if case == "empty-class":
        assert str(root / "empty") in str(caught.value)
    if case not in ("none", "empty-class"):
        assert str(root) in str(caught.value)


def test_an_unreadable_folder_is_a_data_error(tmp_path, data_config, monkeypatch):
    root = tmp_path / "root"
    save_image(root / "a" / "0.png")
    locked, scandir = str(root / "a"), os.scandir

    def refusing_scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refusing_scandir)
    with pytest.raises(DataError, match="Permission denied") as caught:
        load_image_folder(data_config(root=str(root)), 0)
    assert locked in str(caught.value)


def test_the_second_load_reads_the_cache_without_decoding(tmp_path, data_config, monkeypatch):
    root = make_mixed_folder(tmp_path / "photos")
    cfg = data_config(root=str(root))
    calls = []
    decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda *a: calls.append(a[0]) or decode(*a))
    with pytest.warns(DataWarning):
        first = load_image_folder(cfg, 0)
    assert len(calls) == 11  # every image-named file, the broken one included
    assert len(list((tmp_path / "cache" / "image-folder").glob("*.safetensors"))) == 1
    with pytest.warns(DataWarning, match="cat/broken.jpg"):  # the skipped files are still reported
        second = load_image_folder(cfg, 0)
    assert len(calls) == 11, "a cached folder must not be decoded again"
    for a, b in zip(first, second):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)

    save_image(root / "fox" / "d.png")  # a new file changes the key: decode again, same cache file
    with pytest.warns(DataWarning):
        load_image_folder(cfg, 0)
    assert len(calls) == 23
    assert len(list((tmp_path / "cache" / "image-folder").glob("*"))) == 1


def test_a_damaged_cache_is_decoded_again(tmp_path, data_config):
    root = tmp_path / "root"
    for name in ("0.png", "1.png"):  # two per class: a carved test split never takes a class's only image
        save_image(root / "a" / name)
        save_image(root / "b" / name)
    cfg = data_config(root=str(root), test_fraction=0.5)
    first = load_image_folder(cfg, 0)
    (cache_file,) = (tmp_path / "cache" / "image-folder").glob("*.safetensors")
    cache_file.write_bytes(b"garbage")
    second = load_image_folder(cfg, 0)
    assert torch.equal(first[0].images, second[0].images)
    assert cache_file.stat().st_size > 100


def test_the_carved_test_split_does_not_depend_on_the_seed(tmp_path, data_config):
    root = tmp_path / "root"
    for cls in ("a", "b"):
        for i in range(10):
            save_image(root / cls / f"{i}.png", color=(i * 20, 0, 0))
    cfg = data_config(source="image-folder", root=str(root))
    tests = [load_splits(cfg, seed).test for seed in (0, 1, 2)]
    assert all(torch.equal(tests[0].images, t.images) for t in tests[1:])
    assert len(tests[0]) == 4
