"""Which modules the monitor watches, and one output's statistics against torch's own."""
import math

import pytest
import torch
from torch import nn

from cnntricks.monitor.layers import (HIST_BINS, SAMPLE, activation_kind, activation_types, find_activations,
                                      layer_statistics, unit_max)
from cnntricks.nn import activations
from cnntricks.nn.activations import ACTIVATIONS, create_activation


@pytest.mark.parametrize("module, kind", [
    (nn.ReLU(), "rectifier"), (nn.LeakyReLU(), "rectifier"), (nn.PReLU(), "rectifier"), (nn.RReLU(), "rectifier"),
    (nn.Tanh(), "tanh"), (nn.Sigmoid(), "sigmoid"),
    (nn.ELU(), "other"), (nn.GELU(), "other"), (nn.SiLU(), "other")])
def test_kind_is_read_from_the_class_name(module, kind):
    assert activation_kind(module) == kind


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_registered_activation_is_watched(name):
    module = create_activation(name)  # every factory has defaults for its options
    model = nn.Sequential(nn.Linear(4, 4), module)
    assert [found for _, found in find_activations(model)] == [module]


def test_a_class_added_to_cnntricks_activations_is_watched_without_a_change_here(monkeypatch):
    class Maxout(nn.Module):  # as another file might define it
        def forward(self, x):
            return x.view(x.shape[0], -1, 2).amax(-1)

    Maxout.__module__ = activations.__name__
    monkeypatch.setattr(activations, "Maxout", Maxout, raising=False)
    assert Maxout in activation_types() and activation_kind(Maxout()) == "other"
    model = nn.Sequential(nn.Linear(4, 8), Maxout(), nn.Linear(4, 2))
    assert [name for name, _ in find_activations(model)] == ["1"]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_unit_max_is_the_max_over_all_but_dim_1(memory_format):
    torch.manual_seed(0)
    x = torch.randn(8, 16, 5, 5).contiguous(memory_format=memory_format)
    assert torch.equal(unit_max(x), x.amax(dim=(0, 2, 3)))
    assert torch.equal(unit_max(x.transpose(2, 3)), x.amax(dim=(0, 2, 3)))  # neither layout
    features = torch.randn(8, 7)
    assert torch.equal(unit_max(features), features.amax(dim=0))


def test_moments_and_histogram_equal_torch_s():
    torch.manual_seed(0)
    output = torch.randn(16, 4, 6, 6) * 3 + 1  # fewer than SAMPLE elements: the whole output
    stats, active = layer_statistics(nn.GELU(), "other", output, output)
    mean, std, low, high, saturated = stats[:5].tolist()
    expected_std, expected_mean = torch.std_mean(output)
    assert mean == pytest.approx(expected_mean.item(), rel=1e-5)
    assert std == pytest.approx(expected_std.item(), rel=1e-5)
    assert (low, high) == (output.min().item(), output.max().item())
    assert math.isnan(saturated) and active is None
    counts = stats[5:]
    assert len(counts) == HIST_BINS
    assert torch.equal(counts, torch.histc(output, HIST_BINS, low, high))


def test_histogram_counts_the_first_sample_of_a_large_output():
    output = torch.arange(4 * SAMPLE, dtype=torch.float32).view(4, -1)
    stats, _ = layer_statistics(nn.Tanh(), "tanh", output, output)
    assert stats[5:].sum().item() == SAMPLE  # min and max still cover the whole batch:
    assert stats[2:4].tolist() == [0.0, 4 * SAMPLE - 1]
    assert stats[5:5 + 8].sum().item() == SAMPLE  # the first quarter: the first 7.5 of 30 bins
