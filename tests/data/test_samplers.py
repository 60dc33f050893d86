"""imbalance.sampler: each sampler's class frequencies match its definition, epochs have a fixed length,
and a run with a sampler trains and resumes like any other."""
import pytest
import torch

from cnntricks.data.samplers import SAMPLERS, create_sampler

LABELS = torch.tensor([0] * 400 + [1] * 100 + [2] * 25 + [3] * 4)  # 100x, long-tailed


def frequencies(name, progress=0.0, epochs=200):
    sampler, generator = create_sampler(name, LABELS), torch.Generator().manual_seed(0)
    drawn = torch.cat([sampler.order(generator, progress) for _ in range(epochs)])
    assert len(drawn) == sampler.size * epochs
    return torch.bincount(LABELS[drawn], minlength=4).double() / len(drawn)


def test_every_sampler_is_registered():
    assert SAMPLERS.names() == ["class_balanced", "none", "oversample", "progressive", "sqrt", "undersample"]


def test_none_is_a_permutation():
    order = create_sampler("none", LABELS).order(torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(len(LABELS)))


def test_oversample_repeats_every_class_up_to_the_largest():
    sampler = create_sampler("oversample", LABELS)
    order = sampler.order(torch.Generator().manual_seed(0))
    assert sampler.size == 4 * 400 and torch.bincount(LABELS[order]).tolist() == [400] * 4
    assert set(order[LABELS[order] == 0].tolist()) == set(range(400))  # the largest class: each image once
    counts = torch.bincount(order[LABELS[order] == 2] - 500)  # 25 images, 16 copies each
    assert counts.tolist() == [16] * 25
    copies = torch.bincount(order[LABELS[order] == 3] - 525)  # 4 images: 100 copies each
    assert copies.tolist() == [100] * 4


def test_undersample_cuts_every_class_to_the_smallest_and_redraws():
    sampler, generator = create_sampler("undersample", LABELS), torch.Generator().manual_seed(0)
    first, second = sampler.order(generator), sampler.order(generator)
    assert sampler.size == 16 and torch.bincount(LABELS[first]).tolist() == [4] * 4
    assert len(set(first.tolist())) == 16 and set(first.tolist()) != set(second.tolist())


def test_class_balanced_draws_each_class_equally():
    assert frequencies("class_balanced") == pytest.approx([0.25] * 4, abs=0.01)


def test_sqrt_draws_in_proportion_to_the_square_root_of_the_counts():
    roots = torch.tensor([400, 100, 25, 4]).double().sqrt()
    assert frequencies("sqrt") == pytest.approx((roots / roots.sum()).tolist(), abs=0.01)


def test_progressive_moves_from_as_is_to_balanced():
    natural = (torch.tensor([400, 100, 25, 4]) / 529).tolist()
    assert frequencies("progressive", 0.0) == pytest.approx(natural, abs=0.01)
    assert frequencies("progressive", 1.0) == pytest.approx([0.25] * 4, abs=0.01)
    half = [(a + 0.25) / 2 for a in natural]
    assert frequencies("progressive", 0.5) == pytest.approx(half, abs=0.01)


def test_the_same_generator_state_draws_the_same_order():
    for name in SAMPLERS.names():
        sampler = create_sampler(name, LABELS)
        assert torch.equal(sampler.order(torch.Generator().manual_seed(3), 0.4),
                           sampler.order(torch.Generator().manual_seed(3), 0.4))


def test_an_unknown_sampler_is_a_config_error():
    from cnntricks.config import ConfigError, load
    with pytest.raises(ConfigError, match="imbalance.sampler"):
        load(None, ["imbalance.sampler=balanced"])


@pytest.mark.parametrize("name", ["oversample", "class_balanced"])
def test_a_long_tailed_run_trains_with_a_sampler(tmp_path, name):
    from cnntricks.config import load
    from cnntricks.rundir import read_history
    from cnntricks.train.loop import fit
    cfg = load(None, ["data.source=synthetic", "model.width=4", "model.depth=1", "train.threads=1", "train.epochs=2",
                      "optim.batch_size=32", "data.imbalance=8", f"imbalance.sampler={name}",
                      f"data.cache_dir={tmp_path / 'cache'}"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    counts = summary["train_counts"]
    size = len(counts) * max(counts) if name == "oversample" else sum(counts)
    assert summary["steps"] == 2 * (size // 32)  # the schedule's epochs are the sampler's
    assert summary["test_balanced_acc"] is not None
    assert len([r for r in read_history(tmp_path / "run") if r["kind"] == "batch"]) == summary["steps"]


def test_minority_crops_add_copies_of_the_rare_classes_only():
    from cnntricks.data.samplers import minority_classes
    assert minority_classes(LABELS, None) == [2, 3]  # under the median count (62.5)
    assert minority_classes(LABELS, 10) == [3]
    sampler = create_sampler("none", LABELS, minority_crops=4, minority_below=None)
    order = sampler.order(torch.Generator().manual_seed(0))
    assert sampler.size == len(LABELS) + 4 * 29 == len(order)
    assert torch.bincount(LABELS[order]).tolist() == [400, 100, 25 * 5, 4 * 5]
    assert torch.bincount(order[LABELS[order] == 3] - 525).tolist() == [5] * 4  # each image: itself + 4 crops
    balanced = create_sampler("class_balanced", LABELS, minority_crops=1, minority_below=10)
    assert balanced.size == len(LABELS) + 4 and len(balanced.order(torch.Generator().manual_seed(0))) == balanced.size


def test_two_stage_orders_the_head_first_then_the_tail_with_a_replayed_share():
    from cnntricks.data.samplers import two_stage
    sampler = two_stage(LABELS, epochs=4, stage2_epochs=2, head_min=None, replay=0.1, passes=1)  # median 62.5
    assert sampler.head == [0, 1] and sampler.stages == [(2, 500), (2, 29 + 40 + 10)]
    assert [sampler.epoch_size(e) for e in range(4)] == [500, 500, 79, 79]
    generator = torch.Generator().manual_seed(0)
    first = sampler.order(generator, 0 / 4)
    assert sorted(first.tolist()) == list(range(500))  # every head image once
    second = sampler.order(generator, 2 / 4)
    assert torch.bincount(LABELS[second], minlength=4).tolist() == [40, 10, 25, 4]
    assert len(set(second.tolist())) == 79


def test_two_stage_passes_the_tail_until_an_epoch_is_as_long_as_the_first_stages():
    from cnntricks.data.samplers import two_stage
    sampler = two_stage(LABELS, epochs=4, stage2_epochs=2, head_min=None, replay=0.1)  # 500 / 79: 6 passes
    assert sampler.stages == [(2, 500), (2, 6 * 79)]
    order = sampler.order(torch.Generator().manual_seed(0), 2 / 4)
    assert len(order) == 474 and torch.bincount(LABELS[order], minlength=4).tolist() == [240, 60, 150, 24]
    tail = order[LABELS[order] >= 2]
    assert set(torch.bincount(tail).tolist()) - {0} == {6}  # every tail image once a pass
    replayed = order[LABELS[order] < 2]
    assert len(set(replayed.tolist())) > 50  # the head's share is redrawn each pass


def test_two_stage_needs_tail_classes():
    from cnntricks.data import DataError
    from cnntricks.data.samplers import two_stage
    with pytest.raises(DataError, match="no tail classes"):
        two_stage(torch.tensor([0, 0, 1, 1]), epochs=2, stage2_epochs=1, head_min=None, replay=0.1)
