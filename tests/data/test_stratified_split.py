import pytest
import torch

from cnntricks.data import stratified_split


def labels_with_counts(counts):
    labels = torch.cat([torch.full((count,), cls) for cls, count in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(123))]


def test_disjoint_covering_and_sorted():
    labels = labels_with_counts([50, 30, 20])
    keep, held = stratified_split(labels, 0.2, torch.Generator().manual_seed(0))
    assert len(held) == 20 and len(keep) == 80
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(100))
    assert torch.equal(keep, keep.sort().values) and torch.equal(held, held.sort().values)
    assert keep.dtype == held.dtype == torch.int64


def test_class_proportions_are_preserved():
    labels = labels_with_counts([500, 300, 200])
    _, held = stratified_split(labels, 0.1, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[held]).tolist() == [50, 30, 20]


def test_largest_remainder_hits_the_exact_size():
    labels = labels_with_counts([7, 7, 7])  # 10 of 21: quotas 3.33 each, one class gets the extra item
    _, held = stratified_split(labels, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[held]).tolist()
    assert sum(counts) == 10 and sorted(counts) == [3, 3, 4]


def test_deterministic_for_a_seed_and_different_across_seeds():
    labels = labels_with_counts([40, 40])
    first = stratified_split(labels, 0.25, torch.Generator().manual_seed(7))
    again = stratified_split(labels, 0.25, torch.Generator().manual_seed(7))
    other = stratified_split(labels, 0.25, torch.Generator().manual_seed(8))
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


def test_a_smaller_part_is_inside_a_larger_one_for_the_same_seed():
    labels = labels_with_counts([60, 40])
    _, small = stratified_split(labels, 10, torch.Generator().manual_seed(3))
    _, large = stratified_split(labels, 30, torch.Generator().manual_seed(3))
    assert set(small.tolist()) <= set(large.tolist())


@pytest.mark.parametrize("size, held", [(0, 0), (0.0, 0), (1.0, 12), (12, 12)])
def test_edge_sizes(size, held):
    labels = labels_with_counts([6, 6])
    keep, chosen = stratified_split(labels, size, torch.Generator().manual_seed(0))
    assert len(chosen) == held and len(keep) == 12 - held


@pytest.mark.parametrize("size, error", [(13, ValueError), (-1, ValueError), (1.5, ValueError),
                                         (True, TypeError), ("0.1", TypeError)])
def test_bad_sizes_are_rejected(size, error):
    with pytest.raises(error):
        stratified_split(labels_with_counts([6, 6]), size, torch.Generator())


def test_stratified_folds_partition_every_class_evenly():
    from cnntricks.data.split import stratified_folds
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 3)
    folds = stratified_folds(labels, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(folds).tolist()) == list(range(20))  # a partition
    for cls, count in ((0, 10), (1, 7), (2, 3)):
        sizes = [int((labels[f] == cls).sum()) for f in folds]
        assert sum(sizes) == count and max(sizes) - min(sizes) <= 1
    again = stratified_folds(labels, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(folds, again))  # seeded


def test_k_fold_validation_splits_cover_the_training_split_once(tmp_path):
    from cnntricks.config import load
    from cnntricks.data import load_splits
    seen, sizes = [], []
    for fold in range(3):
        cfg = load(None, ["data.source=digits", "data.folds=3", f"data.fold={fold}", "data.split_seed=4"])
        splits = load_splits(cfg.data, 0)
        seen.append(splits.val.images.flatten(1))
        sizes.append((len(splits.train), len(splits.val)))
    total = sum(v for _, v in sizes)
    assert all(t + v == total for t, v in sizes)  # each fold: the rest trains
    rows = torch.cat(seen)
    assert len(rows) == total and abs(sizes[0][1] - total / 3) <= 10
