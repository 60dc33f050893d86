import torch

from cnntricks.data import load_splits
from cnntricks.data.digits import load_digits


def test_shapes_values_and_carved_test(data_config):
    train, test = load_digits(data_config(test_fraction=0.2), 0)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0  # 0..16 scaled to 0..255
    assert train.classes == [str(d) for d in range(10)]
    assert (test.class_counts() >= 35).all()  # stratified: ~36 of each digit


def test_test_split_is_the_same_for_every_seed_but_validation_is_not(data_config):
    first, second = load_splits(data_config(source="digits"), 0), load_splits(data_config(source="digits"), 1)
    assert torch.equal(first.test.images, second.test.images)
    assert not torch.equal(first.val.labels, second.val.labels) or not torch.equal(first.val.images, second.val.images)
