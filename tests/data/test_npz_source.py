import numpy as np
import pytest
import torch

from cnntricks.data import DataError
from cnntricks.data.npz import load_npz


def save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def gray(n, size=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def test_gray_with_test_split_and_class_names(tmp_path, data_config):
    x, x_test = gray(6), gray(4, seed=1)
    root = save(tmp_path, x=x, y=np.array([0, 1, 2, 0, 1, 2]), x_test=x_test, y_test=np.array([2, 1, 0, 0]),
                classes=np.array(["cat", "dog", "fox"]))
    train, test = load_npz(data_config(root=root), 0)
    assert train.images.shape == (6, 1, 5, 5) and torch.equal(train.images[:, 0], torch.from_numpy(x))
    assert test.labels.tolist() == [2, 1, 0, 0] and train.classes == test.classes == ["cat", "dog", "fox"]


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_rgb_layouts(tmp_path, data_config, layout):
    x = np.random.default_rng(0).integers(0, 256, (4, 6, 7, 3), dtype=np.uint8)  # N H W C
    stored = x if layout == "NHWC" else x.transpose(0, 3, 1, 2)
    train, test = load_npz(data_config(root=save(tmp_path, x=stored, y=np.arange(4) % 2,
                                                 x_test=stored, y_test=np.arange(4) % 2)), 0)
    assert torch.equal(train.images, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))


def test_float_images_in_0_1_are_scaled_and_rounded(tmp_path, data_config):
    x = np.array([0.0, 0.5, 1.0, 0.2], dtype=np.float32).reshape(1, 2, 2).repeat(2, axis=0)
    train, _ = load_npz(data_config(root=save(tmp_path, x=x, y=np.array([0, 1]), x_test=x, y_test=np.array([0, 1]))), 0)
    assert train.images[0, 0].flatten().tolist() == [0, 128, 255, 51]


def test_rgba_is_composited_on_white(tmp_path, data_config):
    x = np.zeros((2, 5, 5, 4), dtype=np.uint8)  # black, fully transparent
    train, _ = load_npz(data_config(root=save(tmp_path, x=x, y=np.array([0, 1]), x_test=x, y_test=np.array([0, 1]))), 0)
    assert train.channels == 3 and train.images.unique().tolist() == [255]


def test_without_a_test_split_one_is_carved_and_classes_are_numbered(tmp_path, data_config):
    root = save(tmp_path, x=gray(20), y=np.arange(20) % 4)
    train, test = load_npz(data_config(root=root, test_fraction=0.2), 0)
    assert (len(train), len(test)) == (16, 4) and test.class_counts().tolist() == [1, 1, 1, 1]
    assert train.classes == ["0", "1", "2", "3"]


@pytest.mark.parametrize("arrays, message", [
    (dict(x=gray(3)), "missing array.*y"),
    (dict(x=gray(3), y=np.arange(3), x_test=gray(2)), "missing array.*y_test"),
    (dict(x=gray(3), y=np.arange(4)), "y has 4 labels but x has 3 images"),
    (dict(x=gray(3), y=np.array([0, -1, 1])), "negative labels"),
    (dict(x=gray(3), y=np.array([0, 1, 5]), classes=np.array(["a", "b"])), "labels go up to 5"),
    (dict(x=gray(3), y=np.array([0.0, 1.0, 1.0])), "integer class indices"),
    (dict(x=np.zeros((3, 5), np.uint8), y=np.arange(3)), r"x has shape \(3, 5\)"),
    (dict(x=np.zeros((3, 5, 5, 2), np.uint8), y=np.arange(3)), "channel axis of 1, 3 or 4"),
    (dict(x=np.zeros((3, 3, 5, 3), np.uint8), y=np.arange(3)), "could be channels"),
    (dict(x=np.full((3, 5, 5), 2.0), y=np.arange(3)), r"must\s+lie in \[0, 1\]"),
    (dict(x=np.full((3, 5, 5), 300), y=np.arange(3)), "expected 0..255"),
    (dict(x=gray(3), y=np.arange(3), x_test=gray(2, size=6), y_test=np.arange(2)), "both splits need one format"),
])
def test_bad_arrays_are_named_with_their_shapes(tmp_path, data_config, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(data_config(root=save(tmp_path, **arrays)), 0)


def test_object_arrays_are_never_unpickled(tmp_path, data_config):
    root = save(tmp_path, x=gray(2), y=np.arange(2), classes=np.array(["a", None], dtype=object))
    with pytest.raises(DataError, match="never unpickled"):
        load_npz(data_config(root=root), 0)


@pytest.mark.parametrize("content, message", [(b"not a zip", "cannot read it as .npz"), (None, "is not a file")])
def test_unreadable_files(tmp_path, data_config, content, message):
    path = tmp_path / "data.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_npz(data_config(root=str(path)), 0)


def test_a_single_npy_array_is_refused(tmp_path, data_config):
    path = tmp_path / "x.npy"
    np.save(path, gray(2))
    with pytest.raises(DataError, match="numpy.savez"):
        load_npz(data_config(root=str(path)), 0)
