import numpy as np
import pytest
import torch
from PIL import Image

from cnntricks.data import DataWarning, Store, load_splits


def identified_npz(tmp_path, n=200, classes=4, channels=3, test=40):
    """An npz whose images carry their own index in pixel (0, 0) and (0, 1), to trace every split."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 6, 6, channels), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256
    y = rng.permutation(np.arange(n) % classes)
    path = tmp_path / "ids.npz"
    np.savez(path, x=x, y=y, x_test=x[:test], y_test=y[:test])
    return str(path)


def ids(store: Store) -> set[int]:
    return set((store.images[:, 0, 0, 0].long() * 256 + store.images[:, 0, 0, 1].long()).tolist())


def test_validation_is_carved_from_training_stratified_and_disjoint(tmp_path, data_config):
    splits = load_splits(data_config(source="npz", root=identified_npz(tmp_path), val_fraction=0.1), 0)
    assert (len(splits.train), len(splits.val)) == (180, 20)
    assert not ids(splits.train) & ids(splits.val) and ids(splits.train) | ids(splits.val) == set(range(200))
    assert splits.val.class_counts().tolist() == [5, 5, 5, 5]


def test_seeded_val_is_repeatable_and_changes_with_the_seed_but_test_never_does(tmp_path, data_config):
    cfg = data_config(source="npz", root=identified_npz(tmp_path))
    first, again, other = load_splits(cfg, 0), load_splits(cfg, 0), load_splits(cfg, 1)
    assert ids(first.val) == ids(again.val) and ids(first.val) != ids(other.val)
    assert torch.equal(first.test.images, other.test.images) and torch.equal(first.test.labels, other.test.labels)


def test_zero_val_fraction_gives_an_empty_validation_split(data_config):
    splits = load_splits(data_config(source="synthetic", val_fraction=0), 0)
    assert len(splits.train) == 512 and splits.val.images.shape == (0, 3, 16, 16)


def test_subset_keeps_n_training_images_and_shrinks_val_in_proportion(tmp_path, data_config):
    cfg = data_config(source="npz", root=identified_npz(tmp_path), val_fraction=0.2)
    full = load_splits(cfg, 0)
    cfg.subset = 40
    small = load_splits(cfg, 0)
    assert len(small.train) == 40 and len(small.val) == round(40 * 40 / 160)  # val stays 20% of the data in use
    assert small.train.class_counts().tolist() == [10, 10, 10, 10]
    assert ids(small.train) <= ids(full.train) and ids(small.val) <= ids(full.val)
    assert torch.equal(small.test.images, full.test.images)


def test_a_subset_larger_than_the_data_keeps_everything_with_a_warning(data_config):
    with pytest.warns(DataWarning, match="data.subset=5000"):
        splits = load_splits(data_config(source="synthetic", subset=5000), 0)
    assert len(splits.train) + len(splits.val) == 512


def test_channels_convert_every_split_with_itu_601_luma(tmp_path, data_config):
    root = identified_npz(tmp_path, channels=3)
    rgb = load_splits(data_config(source="npz", root=root), 0)
    gray = load_splits(data_config(source="npz", root=root, channels=1), 0)
    for store in (gray.train, gray.val, gray.test):
        assert store.channels == 1
    pillow = Image.fromarray(rgb.test.images[0].permute(1, 2, 0).numpy(), "RGB").convert("L")
    assert np.array_equal(gray.test.images[0, 0].numpy(), np.asarray(pillow))


def test_gray_sources_become_rgb_by_repeating(data_config):
    splits = load_splits(data_config(source="digits", channels=3), 0)
    assert splits.train.channels == 3 and torch.equal(splits.train.images[:, 0], splits.train.images[:, 2])


def test_image_size_resizes_every_source(data_config):
    splits = load_splits(data_config(source="digits", image_size=16), 0)
    assert splits.train.images.shape[1:] == splits.val.images.shape[1:] == splits.test.images.shape[1:] == (1, 16, 16)


def test_an_unknown_source_lists_the_known_ones(data_config):
    with pytest.raises(ValueError, match="did you mean 'synthetic'.*known: digits, fashion-mnist, image-folder, letters, npz"):
        load_splits(data_config(source="synthetc"), 0)
