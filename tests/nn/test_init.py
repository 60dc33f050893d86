import math

import pytest
import torch
from torch import nn

from cnntricks.nn import INITS, initialize, scheme_for
from cnntricks.nn.activations import NEGATIVE_SLOPE


def big_conv():
    return nn.Conv2d(256, 256, 3)  # fan_in 256*3*3 = 2304, 590k weights: the std is estimated to ~0.1%


def test_he_normal_std_is_sqrt_2_over_fan_in():
    conv = initialize(big_conv(), "he_normal", "relu")
    expected = math.sqrt(2 / 2304)
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert conv.weight.mean().abs().item() < 0.01 * expected
    assert torch.all(conv.bias == 0)


def test_calibrated_std_is_1_over_sqrt_fan_in():
    linear = initialize(nn.Linear(1024, 1024), "calibrated", "tanh")
    assert linear.weight.std().item() == pytest.approx(1 / math.sqrt(1024), rel=0.05)
    assert torch.all(linear.bias == 0)


def test_he_variance_accounts_for_the_negative_slope(monkeypatch):
    # He et al. 2015: variance 2 / ((1 + a²) n); with a slope of 1 the unit is linear, variance 1/n
    monkeypatch.setitem(NEGATIVE_SLOPE, "identity_like", 1.0)
    conv = initialize(big_conv(), "he_normal", "identity_like")
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(2304), rel=0.05)


def test_norm_layers_start_at_scale_one_shift_zero():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2), nn.LayerNorm(2))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(2, 3)
    initialize(model)
    for norm in (model[1], model[3]):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert torch.all(model[0].bias == 0) and torch.all(model[2].bias == 0)


def test_torch_default_conv_variance_is_a_third_of_calibrated():
    # the trap the docstring names: U(-1/sqrt(n), 1/sqrt(n)) has variance 1/(3n), not 1/n
    conv = big_conv()
    assert conv.weight.var().item() == pytest.approx(1 / (3 * 2304), rel=0.05)


def second_moment_after(depth: int, scheme: str) -> float:
    torch.manual_seed(0)
    x = torch.randn(512, 512)
    for _ in range(depth):
        layer = initialize(nn.Linear(512, 512), scheme, "relu")
        x = torch.relu(layer(x))
    return x.pow(2).mean().item()


def test_he_keeps_the_signal_through_20_relu_layers_and_calibrated_halves_it_each_layer():
    # input second moment is 1; ReLU halves it per layer unless the weights double it (seed §3)
    assert 0.5 < second_moment_after(20, "he_normal") < 2
    assert second_moment_after(20, "calibrated") == pytest.approx(2.0**-20, rel=0.5)


def test_scheme_follows_the_activation():
    assert scheme_for("tanh") == scheme_for("sigmoid") == "calibrated"
    assert {scheme_for(a) for a in ("relu", "leaky_relu", "elu", "gelu", "silu")} == {"he_normal"}


def test_generator_makes_it_repeatable():
    a = initialize(nn.Linear(16, 16), generator=torch.Generator().manual_seed(7))
    b = initialize(nn.Linear(16, 16), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.weight, b.weight)


def test_unknown_scheme_is_an_error_naming_the_known_ones():
    assert {"he_normal", "calibrated"} <= set(INITS.names())
    with pytest.raises(ValueError, match="unknown initialization scheme 'he_norml'.*did you mean 'he_normal'"):
        initialize(nn.Linear(2, 2), "he_norml")
