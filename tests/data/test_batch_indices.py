import pytest
import torch

from cnntricks.data import batch_indices


def epoch(n, batch_size, seed, **kwargs):
    return list(batch_indices(n, batch_size, torch.Generator().manual_seed(seed), **kwargs))


def test_same_seed_same_batches_and_other_seed_other_batches():
    assert all(torch.equal(a, b) for a, b in zip(epoch(100, 10, 0), epoch(100, 10, 0)))
    assert not torch.equal(torch.cat(epoch(100, 10, 0)), torch.cat(epoch(100, 10, 1)))


def test_each_index_once_per_epoch_when_keeping_the_last_batch():
    batches = epoch(103, 10, 0, drop_last=False)
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))


def test_drop_last_gives_full_batches_only():
    batches = epoch(103, 10, 0)
    assert [len(b) for b in batches] == [10] * 10
    assert len(set(torch.cat(batches).tolist())) == 100


def test_successive_epochs_from_one_generator_differ():
    generator = torch.Generator().manual_seed(0)
    first = torch.cat(list(batch_indices(50, 10, generator)))
    second = torch.cat(list(batch_indices(50, 10, generator)))
    assert not torch.equal(first, second)


def test_without_shuffle_the_order_is_kept_and_no_generator_is_needed():
    assert torch.equal(torch.cat(list(batch_indices(7, 3, None, shuffle=False, drop_last=False))), torch.arange(7))


def test_no_batch_at_all_is_an_error():
    with pytest.raises(ValueError, match="optim.batch_size"):
        epoch(5, 10, 0)
    with pytest.raises(ValueError, match="Generator"):
        list(batch_indices(5, 2, None))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_generator_gives_indices_on_its_device():
    # The training loop passes torch.Generator(device=device): the permutation is drawn there.
    batches = list(batch_indices(100, 10, torch.Generator(device="cuda").manual_seed(0)))
    assert batches[0].device.type == "cuda"
    assert torch.equal(torch.cat(batches).sort().values.cpu(), torch.arange(100))
