import math
import typing

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn import ACTIVATIONS, create_activation
from cnntricks.nn.activations import (RRELU_EVAL_SLOPE, Maxout, RandomizedReLU, activation_options,
                                      negative_slope, width_factor)


def config_activation_names():
    return typing.get_args(typing.get_type_hints(ModelConfig)["activation"])


@pytest.mark.parametrize("name", config_activation_names())
def test_every_config_name_creates_a_fresh_module(name):
    first, second = create_activation(name), create_activation(name)
    assert isinstance(first, nn.Module)
    assert first is not second  # one instance per layer, so learnable slopes are never shared
    assert first(torch.zeros(2, 6)).shape == (2, 6 // width_factor(name))


def test_registry_holds_exactly_the_config_names():
    assert set(ACTIVATIONS.names()) == set(config_activation_names())


def test_values_at_known_points():
    x = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(create_activation("relu")(x), torch.tensor([0.0, 0.0, 2.0]))
    # seed §5 Leaky ReLU: slope 0.01 for negative inputs by default
    torch.testing.assert_close(create_activation("leaky_relu")(x), torch.tensor([-0.01, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("leaky_relu", negative_slope=0.2)(x), torch.tensor([-0.2, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("prelu")(x), torch.tensor([-0.25, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("rrelu").eval()(x), torch.tensor([-2 / 11, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("elu")(x), torch.tensor([torch.e ** -1 - 1, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("sigmoid")(torch.zeros(1)), torch.tensor([0.5]))
    torch.testing.assert_close(create_activation("tanh")(torch.tensor([1.0])), torch.tanh(torch.tensor([1.0])))
    torch.testing.assert_close(create_activation("silu")(torch.tensor([1.0])), torch.sigmoid(torch.tensor([1.0])))
    torch.testing.assert_close(create_activation("gelu")(torch.tensor([0.0, 10.0])), torch.tensor([0.0, 10.0]))


def test_unknown_name_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu' \(did you mean 'relu'\?\).*known: elu, gelu"):
        create_activation("rleu")


# --- options: one model-wide dict, each factory takes what it names ---------------------------

def test_model_wide_options_reach_only_the_factories_that_take_them():
    options = dict(negative_slope=1 / 5.5, mode="channel", pieces=3, channels=4)
    assert type(create_activation("relu", **options)) is nn.ReLU
    assert create_activation("leaky_relu", **options).negative_slope == 1 / 5.5
    assert create_activation("prelu", **options).weight.shape == (4,)
    assert create_activation("maxout", **options).pieces == 3
    assert isinstance(create_activation("rrelu", **options), RandomizedReLU)


def test_an_option_no_activation_takes_is_an_error_with_the_closest():
    with pytest.raises(ValueError, match=r"'negativ_slope' \(did you mean 'negative_slope'\?\) is taken by no activation"):
        create_activation("relu", negativ_slope=0.2)


def test_activation_options_come_from_the_config():
    # the seed's table writes a = 1/slope: a = 5.5 is slope 1/5.5
    cfg = ModelConfig(negative_slope=1 / 5.5, prelu="shared", maxout_pieces=3)
    assert activation_options(cfg) == {"negative_slope": 1 / 5.5, "mode": "shared", "pieces": 3}
    assert activation_options(cfg, channels=8)["channels"] == 8
    assert negative_slope("leaky_relu", **activation_options(cfg)) == 1 / 5.5
    assert negative_slope("relu", **activation_options(cfg)) == 0.0
    assert width_factor("maxout", **activation_options(cfg)) == 3
    assert width_factor("maxout") == 2
    assert width_factor("prelu", pieces=3) == 1


# --- RReLU: seed §5, slope 1/U(3, 8) in training, 2/11 in evaluation ---------------------------

def rrelu_training_slopes(n=200_000, seed=0):
    module = create_activation("rrelu").train()
    module.generator = torch.Generator().manual_seed(seed)
    return -module(-torch.ones(n))  # the slope each element got


def test_rrelu_training_slopes_follow_one_over_uniform_3_8():
    slopes = rrelu_training_slopes()
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    # E[1/a] = ∫ 1/a da / 5 over [3, 8] = ln(8/3)/5 ≈ 0.1962; a slope uniform in [1/8, 1/3] gives 0.229
    assert slopes.mean().item() == pytest.approx(math.log(8 / 3) / 5, abs=1e-3)
    # P(slope <= s) = P(a >= 1/s) = (8 - 1/s) / 5: the median is 1/5.5 = 2/11, the quartiles 1/6.75 and 1/4.25
    quantiles = torch.quantile(slopes[:100_000], torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(quantiles, torch.tensor([1 / 6.75, 1 / 5.5, 1 / 4.25]), atol=2e-3, rtol=0)


def test_rrelu_draws_per_element_and_per_call_and_passes_positives():
    module = create_activation("rrelu").train()
    x = torch.cat([-torch.ones(1000), torch.arange(1.0, 11.0)])
    first, second = module(x), module(x)
    assert first[:1000].unique().numel() > 900  # a slope per element
    assert not torch.equal(first[:1000], second[:1000])  # drawn again each call
    assert torch.equal(first[1000:], x[1000:])


def test_rrelu_gradient_is_the_drawn_slope():
    module = create_activation("rrelu").train()
    x = -torch.rand(100) - 0.1
    x.requires_grad_(True)
    y = module(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y / x).detach())


def test_rrelu_generator_makes_it_repeatable():
    assert torch.equal(rrelu_training_slopes(1000, seed=3), rrelu_training_slopes(1000, seed=3))
    assert not torch.equal(rrelu_training_slopes(1000, seed=3), rrelu_training_slopes(1000, seed=4))


def test_rrelu_evaluation_slope_is_exactly_2_over_11_unlike_torch():
    module = create_activation("rrelu").eval()
    assert RRELU_EVAL_SLOPE == 2 / 11
    assert torch.equal(module(-torch.ones(5)), torch.full((5,), -2 / 11))
    # torch's nn.RReLU(1/8, 1/3) evaluates at (1/8 + 1/3) / 2 = 11/48, and trains uniform in slope
    torch_rrelu = nn.RReLU(1 / 8, 1 / 3).eval()
    torch.testing.assert_close(torch_rrelu(-torch.ones(1)), torch.tensor([-11 / 48]))
    torch.manual_seed(0)
    torch_slopes = -nn.RReLU(1 / 8, 1 / 3).train()(-torch.ones(100_000))
    assert torch_slopes.mean().item() == pytest.approx(11 / 48, abs=2e-3)  # not ln(8/3)/5


@pytest.mark.parametrize("name", ["rrelu", "maxout", "prelu"])
def test_bf16_autocast_and_channels_last(name):
    module = create_activation(name, channels=6).train()
    x = torch.randn(2, 6, 4, 4).to(memory_format=torch.channels_last).requires_grad_(True)
    conv = nn.Conv2d(6, 6, 1).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(conv(x))
    assert y.dtype == torch.bfloat16
    assert y.shape == (2, 6 // width_factor(name), 4, 4)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


# --- PReLU: He et al. 2015, a learned slope from 0.25 -----------------------------------------

@pytest.mark.parametrize("mode,slopes", [("channel", 3), ("shared", 1)])
def test_prelu_slope_count_start_and_learning(mode, slopes):
    module = create_activation("prelu", channels=3, mode=mode)
    assert module.weight.shape == (slopes,)
    assert torch.all(module.weight == 0.25)
    assert module(torch.randn(2, 3)).shape == (2, 3)  # (N, C) and (N, C, H, W)
    # negative inputs with targets at slope 0.5: a few SGD steps move every slope up from 0.25
    x = -torch.rand(8, 3, 4, 4) - 0.1
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.mse_loss(module(x), 0.5 * x).backward()
        optimizer.step()
    assert torch.all(module.weight > 0.3)


def test_prelu_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="prelu: unknown mode 'layer'"):
        create_activation("prelu", mode="layer")


# --- Maxout: the slides' max(w1ᵀx + b1, w2ᵀx + b2) ----------------------------------------------

def test_maxout_is_the_max_of_each_group_of_k_consecutive_channels():
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.0, 7.0]])
    torch.testing.assert_close(Maxout(2)(x), torch.tensor([[5.0, -2.0, 7.0]]))
    torch.testing.assert_close(Maxout(3)(x), torch.tensor([[5.0, 7.0]]))
    maps = torch.tensor([[1.0, -1.0], [0.0, 2.0], [-4.0, 3.0], [-5.0, -6.0]]).view(1, 4, 1, 2)  # (N, 4, H, W)
    expected = torch.tensor([[1.0, 2.0], [-4.0, 3.0]]).view(1, 2, 1, 2)
    torch.testing.assert_close(Maxout(2)(maps), expected)
    torch.testing.assert_close(Maxout(2)(maps.to(memory_format=torch.channels_last)), expected)


def test_maxout_names_a_channel_count_that_does_not_divide():
    with pytest.raises(ValueError, match=r"k = 2 pieces.*got shape \(2, 5\)"):
        Maxout(2)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="pieces must be >= 2"):
        Maxout(1)
