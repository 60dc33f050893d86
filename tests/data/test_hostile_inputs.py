"""Hostile inputs are refused (or repaired with a warning) before any work, with a message that
names the problem: stray labels, splits too small for their fractions, sizes that do not fit in
memory, links that loop, a mistyped Fashion-MNIST data.root. Small synthetic data only."""
import os
import warnings

import numpy as np
import pytest
import torch
from data_helpers import save_image

from cnntricks.data import DataError, DataWarning, load_splits, memory, stratified_split
from cnntricks.data import fashion_mnist, image_folder
from cnntricks.data.fashion_mnist import load_fashion_mnist
from cnntricks.data.npz import load_npz
from cnntricks.data.sources import carve_test
from cnntricks.data.split import hold_out
from cnntricks.data.store import Store


def save_npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def numbered(n):
    """uint8 (n, 5, 5) images whose pixel (0, 0) is their index, to follow each one through a split."""
    x = np.zeros((n, 5, 5), np.uint8)
    x[:, 0, 0] = np.arange(n)
    return x


def folder(root, counts):
    """An image folder with counts[name] 8x8 images per class."""
    for name, count in counts.items():
        for index in range(count):
            save_image(root / name / f"{index}.png", color=(10 * index, 0, 0))
    return root


# ---- 1. labels that are not 0..K-1 ---------------------------------------------------------------

def test_labels_with_a_gap_become_four_classes_named_by_value_in_both_splits(tmp_path, data_config):
    y, y_test = np.array([0, 1, 2, 999, 999, 2]), np.array([999, 0, 1, 2])
    root = save_npz(tmp_path, x=numbered(6), y=y, x_test=numbered(4), y_test=y_test)
    with pytest.warns(DataWarning, match=r"not 0\.\.K-1.*missing 3\.\.998.*4 classes"):
        train, test = load_npz(data_config(root=root), 0)
    assert train.classes == test.classes == ["0", "1", "2", "999"]
    assert train.labels.tolist() == [0, 1, 2, 3, 3, 2] and test.labels.tolist() == [3, 0, 1, 2]
    assert train.images[:, 0, 0, 0].tolist() == list(range(6))  # images keep their own labels


def test_a_label_of_2_to_the_62_is_one_class_not_an_out_of_memory(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(8), y=np.array([0, 1, 2, 2**62] * 2))
    with pytest.warns(DataWarning, match=f"missing 3..{2**62 - 1}"):
        splits = load_splits(data_config(source="npz", root=root, val_fraction=0, test_fraction=0.5), 0)
    assert splits.classes == ["0", "1", "2", str(2**62)]
    assert int(torch.cat([splits.train.labels, splits.test.labels]).max()) == 3


def test_one_based_labels_are_renumbered_with_a_warning(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(6), y=np.array([1, 2, 3] * 2), x_test=numbered(3), y_test=np.array([1, 2, 3]))
    with pytest.warns(DataWarning, match="missing 0"):
        train, _ = load_npz(data_config(root=root), 0)
    assert train.classes == ["1", "2", "3"] and train.labels.tolist() == [0, 1, 2] * 2


def test_labels_0_to_k_minus_1_give_no_warning(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(6), y=np.array([0, 1, 2] * 2), x_test=numbered(3), y_test=np.array([0, 1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, _ = load_npz(data_config(root=root), 0)
    assert train.classes == ["0", "1", "2"]


@pytest.mark.parametrize("arrays, message", [
    (dict(y=np.array([0, 1, 2**64 - 1], dtype=np.uint64)), "beyond 64-bit integers"),
    (dict(y=np.array([0, 1, 999]), classes=np.array(["a", "b", "c"])), "labels go up to 999"),
])
def test_labels_that_cannot_be_classes_are_an_error(tmp_path, data_config, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(data_config(root=save_npz(tmp_path, x=numbered(3), **arrays)), 0)


# ---- 2. classes of the splits, and splits too small for their fractions --------------------------

def test_a_test_class_that_training_lacks_is_an_error_naming_it(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(6), y=np.array([0, 1] * 3), x_test=numbered(3), y_test=np.array([0, 1, 2]))
    with pytest.raises(DataError, match="test split has class\\(es\\) '2' that the training split lacks"):
        load_splits(data_config(source="npz", root=root), 0)


@pytest.mark.parametrize("counts", [{"cats": 5}, {"cats": 1}])
def test_one_class_folder_or_one_image_is_an_error(tmp_path, data_config, counts):
    root = folder(tmp_path / "photos", counts)
    with pytest.raises(DataError, match="of one class, 'cats'; a classifier needs at least 2 classes"):
        load_splits(data_config(source="image-folder", root=str(root)), 0)


def test_a_class_that_no_split_has_is_a_warning(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(6), y=np.array([0, 1] * 3), x_test=numbered(2), y_test=np.array([0, 1]),
                    classes=np.array(["cat", "dog", "fox"]))
    with pytest.warns(DataWarning, match="names 1 class\\(es\\) that no split has: 'fox'"):
        splits = load_splits(data_config(source="npz", root=root, val_fraction=0), 0)
    assert splits.classes == ["cat", "dog", "fox"]


def test_one_image_per_class_cannot_give_a_test_split(tmp_path, data_config):
    root = folder(tmp_path / "photos", {"a": 1, "b": 1, "c": 1})
    with pytest.raises(DataError, match="cannot carve a test split.*only image.*at least 2 per class") as caught:
        load_splits(data_config(source="image-folder", root=str(root)), 0)
    assert str(root) in str(caught.value)


def test_a_test_fraction_that_rounds_to_nothing_is_an_error(tmp_path, data_config):
    root = folder(tmp_path / "photos", {"a": 2, "b": 2})
    with pytest.raises(DataError, match="data.test_fraction=0.1 of 4 images rounds to no test image"):
        load_splits(data_config(source="image-folder", root=str(root), test_fraction=0.1), 0)


def test_one_image_per_class_gives_an_empty_validation_split_with_a_warning(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(3), y=np.array([0, 1, 2]), x_test=numbered(3), y_test=np.array([0, 1, 2]))
    with pytest.warns(DataWarning, match="validation split is empty.*no validation accuracy"):
        splits = load_splits(data_config(source="npz", root=root, val_fraction=0.1), 0)
    assert len(splits.val) == 0 and splits.train.class_counts().tolist() == [1, 1, 1]


def test_a_validation_split_that_would_take_a_class_is_made_smaller(tmp_path, data_config):
    y = np.array([0] * 8 + [1, 2])  # 5 of 10: 4 of class 0, and the leftover one goes to class 1's only image
    root = save_npz(tmp_path, x=numbered(10), y=y, x_test=numbered(3), y_test=np.array([0, 1, 2]))
    with pytest.warns(DataWarning, match="validation split has 4 images instead of the 5.*class\\(es\\) '1' have"):
        splits = load_splits(data_config(source="npz", root=root, val_fraction=0.5), 0)
    assert splits.train.class_counts().tolist() == [4, 1, 1] and splits.val.class_counts().tolist() == [4, 0, 0]


def test_a_carved_test_split_that_would_take_a_class_is_made_smaller(tmp_path, data_config):
    root = save_npz(tmp_path, x=numbered(10), y=np.array([0] * 8 + [1, 2]))
    with pytest.warns(DataWarning, match="test split has 4 images instead of the 5"):
        train, test = load_npz(data_config(root=root, test_fraction=0.5), 0)
    assert train.class_counts().tolist() == [4, 1, 1] and len(test) == 4


def test_a_subset_that_drops_a_class_is_an_error(tmp_path, data_config):
    y = np.array([0] * 100 + [1] * 3)
    root = save_npz(tmp_path, x=np.zeros((103, 5, 5), np.uint8), y=y, x_test=numbered(2), y_test=np.array([0, 1]))
    with pytest.raises(DataError, match="data.subset=10 keeps no training image of class\\(es\\) '1'.*at least 31"):
        load_splits(data_config(source="npz", root=root, subset=10), 0)
    splits = load_splits(data_config(source="npz", root=root, subset=31), 0)  # the suggested size keeps both
    assert (splits.train.class_counts() > 0).all()


@pytest.mark.parametrize("counts", [[1, 1], [1, 2], [2, 1], [3, 1], [1, 1, 1], [2, 2]])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_hold_out_of_1_to_3_images_never_takes_a_class(counts, fraction):
    labels = torch.cat([torch.full((count,), cls) for cls, count in enumerate(counts)])
    keep, held, asked, cut = hold_out(labels, fraction, torch.Generator().manual_seed(0))
    assert (torch.bincount(labels[keep], minlength=len(counts)) >= 1).all()
    assert len(held) <= asked and (len(held) < asked) == bool(cut)
    plain_keep, _ = stratified_split(labels, fraction, torch.Generator().manual_seed(0))  # uncapped, as before
    assert len(plain_keep) + asked == len(labels)


def test_carve_test_of_two_images_per_class_keeps_one_of_each():
    store = Store(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        train, test = carve_test(store, 0.9)
    assert train.class_counts().tolist() == [1, 1, 1] and test.class_counts().tolist() == [1, 1, 1]


# ---- 3. memory of data.image_size --------------------------------------------------------------

@pytest.fixture
def eight_gigabytes(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 8 * 10**9)


def test_an_image_size_that_does_not_fit_is_refused_before_resizing(tmp_path, data_config, eight_gigabytes):
    root = save_npz(tmp_path, x=numbered(10), y=np.arange(10) % 2, x_test=numbered(2), y_test=np.array([0, 1]))
    with pytest.raises(DataError, match=r"data.image_size=100000: resizing 12 images.*needs about 160\.0 GB "
                                        r"of memory but 8\.0 GB is available; lower data.image_size"):
        load_splits(data_config(source="npz", root=root, image_size=100000, val_fraction=0.1), 0)


def test_an_image_folder_is_not_decoded_at_a_size_that_does_not_fit(tmp_path, data_config, eight_gigabytes,
                                                                     monkeypatch):
    root = folder(tmp_path / "photos", {"a": 2, "b": 2})
    monkeypatch.setattr(image_folder, "decode_image", lambda *args: pytest.fail("decoded before the memory check"))
    with pytest.raises(DataError, match=r"decoding 4 images .* to 3x100000x100000 .*needs about 240\.0 GB"):
        load_splits(data_config(source="image-folder", root=str(root), image_size=100000), 0)


def test_an_image_folder_of_huge_images_says_to_set_image_size(tmp_path, data_config, monkeypatch):
    root = folder(tmp_path / "photos", {"a": 2, "b": 2})
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)  # 4 images of 3x8x8, twice, are 1536 bytes
    with pytest.raises(DataError, match=r"set data.image_size=N to resize them \(the first image, 'a/0.png', is 8x8\)"):
        load_splits(data_config(source="image-folder", root=str(root)), 0)


def test_synthetic_data_at_a_size_that_does_not_fit_is_refused(data_config, eight_gigabytes):
    with pytest.raises(DataError, match="data.image_size=4096: drawing 640 synthetic images"):
        load_splits(data_config(source="synthetic", image_size=4096), 0)


def test_available_memory_reads_meminfo_or_falls_back(monkeypatch):
    assert memory.available_memory() > 0

    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/meminfo")
    monkeypatch.setattr(memory, "open", no_proc, raising=False)
    assert memory.available_memory() > 0  # os.sysconf's free pages


# ---- 5. links to folders in an image folder ---------------------------------------------------

@pytest.fixture
def photos(tmp_path):
    root = folder(tmp_path / "photos", {"cats": 3, "dogs": 2})
    folder(tmp_path / "elsewhere", {"birds": 2})
    return root


def load_classes(root, data_config):
    train, test = image_folder.load_image_folder(data_config(root=str(root), test_fraction=0.5), 0)
    return dict(zip(train.classes, (train.class_counts() + test.class_counts()).tolist()))


@pytest.mark.parametrize("link, target", [
    ("loop", "photos"),            # the root itself
    ("up", "."),                   # a folder above the root
    ("dogs2", "photos/dogs"),      # another class folder
    ("cats/more", "elsewhere"),    # a link inside a class folder
])
def test_links_to_the_root_its_ancestors_or_its_classes_are_not_followed(photos, data_config, link, target):
    os.symlink(photos.parent / target, photos / link)
    with pytest.warns(DataWarning, match=f"skipped 1 link .*\n  {link}: .*not followed"):
        classes = load_classes(photos, data_config)
    assert classes == {"cats": 3, "dogs": 2}


def test_links_in_a_loop_are_skipped_not_a_crash(photos, data_config):
    os.symlink("y", photos / "x")
    os.symlink("x", photos / "y")
    with pytest.warns(DataWarning, match="skipped 2 links .*\n  x: a link that cannot be resolved"):
        classes = load_classes(photos, data_config)
    assert classes == {"cats": 3, "dogs": 2}


def test_a_class_folder_linked_from_outside_is_followed_once_with_a_warning(photos, data_config):
    os.symlink(photos.parent / "elsewhere" / "birds", photos / "birds")
    os.symlink(photos.parent / "elsewhere" / "birds", photos / "birds2")
    with pytest.warns(DataWarning) as caught:
        classes = load_classes(photos, data_config)
    messages = "\n".join(str(w.message) for w in caught)
    assert f"followed 1 link under '{photos}'" in messages and "birds -> " in messages
    assert "birds2: a link to" in messages and "already read" in messages
    assert classes == {"birds": 2, "cats": 3, "dogs": 2}


# ---- 6. Fashion-MNIST with a data.root of the user's own ---------------------------------------

@pytest.fixture
def no_download(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "download", lambda *args, **kwargs: pytest.fail("tried a download"))


def test_a_mistyped_fashion_mnist_root_is_an_error_and_is_never_created(tmp_path, data_config, no_download):
    root = tmp_path / "fashon"
    with pytest.raises(DataError, match=f"data.root: '{root}' does not exist; is the path right") as caught:
        load_fashion_mnist(data_config(root=str(root), download=True), 0)
    assert not root.exists() and "nothing is downloaded into a data.root" in str(caught.value)


@pytest.mark.parametrize("kind", ["empty folder", "file"])
def test_a_fashion_mnist_root_without_the_files_is_an_error(tmp_path, data_config, no_download, kind):
    root = tmp_path / "fm"
    if kind == "file":
        root.write_text("x")
        expected = "is a file, not a folder"
    else:
        root.mkdir()
        (root / "train-images-idx3-ubyte.gz").write_bytes(b"")  # one of the four
        expected = "lacks train-labels-idx1-ubyte"
    with pytest.raises(DataError, match=f"data.root: '{root}' {expected}"):
        load_fashion_mnist(data_config(root=str(root), download=True), 0)
    assert [p.name for p in tmp_path.rglob("*.gz")] == ([] if kind == "file" else ["train-images-idx3-ubyte.gz"])


def test_a_failed_download_does_not_ask_for_data_download_true_again(tmp_path, data_config, monkeypatch):
    def failing(url, *args, **kwargs):
        raise DataError(f"download of {url} failed: no network")
    monkeypatch.setattr(fashion_mnist, "download", failing)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    with pytest.raises(DataError, match="no network") as caught:
        load_fashion_mnist(data_config(download=True), 0)
    assert "data.download=true" not in str(caught.value) and "network access" in str(caught.value)
    with pytest.raises(DataError, match="data.download is false") as caught:
        load_fashion_mnist(data_config(download=False), 0)
    assert "data.download=true" in str(caught.value)
