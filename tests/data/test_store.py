import pytest
import torch

from cnntricks.data import Splits, Store


def make_store(n=6, channels=1, size=4):
    images = torch.arange(n * channels * size * size).reshape(n, channels, size, size).to(torch.uint8)
    return Store(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_properties_and_len():
    store = make_store(n=6, channels=3, size=5)
    assert (len(store), store.channels, store.height, store.width) == (6, 3, 5, 5)
    assert store.class_counts().tolist() == [2, 2, 2]


def test_subset_copies_the_chosen_rows():
    store = make_store()
    part = store.subset(torch.tensor([4, 1]))
    assert part.labels.tolist() == [1, 1]
    assert torch.equal(part.images[0], store.images[4])
    part.images.zero_()
    assert store.images.sum() > 0, "a subset must not alias the original"
    assert part.classes == store.classes


def test_non_contiguous_images_are_made_contiguous():
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8).permute(0, 3, 1, 2)  # channels-last
    assert not images.is_contiguous()
    assert Store(images, torch.zeros(2, dtype=torch.int64), ["x"]).images.is_contiguous()


@pytest.mark.parametrize("images, labels, message", [
    (torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), "uint8"),
    (torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), "uint8"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), "int64"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), "2 images but 3 labels"),
])
def test_bad_layout_is_rejected(images, labels, message):
    with pytest.raises(ValueError, match=message):
        Store(images, labels, ["x"])


def test_splits_exposes_the_classes():
    store = make_store()
    assert Splits(store, store.subset(torch.tensor([], dtype=torch.int64)), None, "x").classes == ["a", "b", "c"]
