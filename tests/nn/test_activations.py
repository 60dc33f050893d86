import typing

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn import ACTIVATIONS, create_activation


def config_activation_names():
    return typing.get_args(typing.get_type_hints(ModelConfig)["activation"])


@pytest.mark.parametrize("name", config_activation_names())
def test_every_config_name_creates_a_fresh_module(name):
    first, second = create_activation(name), create_activation(name)
    assert isinstance(first, nn.Module)
    assert first is not second  # one instance per layer, so learnable slopes are never shared
    assert first(torch.zeros(3)).shape == (3,)


def test_registry_holds_exactly_the_config_names():
    assert set(ACTIVATIONS.names()) == set(config_activation_names())


def test_values_at_known_points():
    x = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(create_activation("relu")(x), torch.tensor([0.0, 0.0, 2.0]))
    # seed §5 Leaky ReLU: slope 0.01 for negative inputs by default
    torch.testing.assert_close(create_activation("leaky_relu")(x), torch.tensor([-0.01, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("leaky_relu", negative_slope=0.2)(x), torch.tensor([-0.2, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("elu")(x), torch.tensor([torch.e ** -1 - 1, 0.0, 2.0]))
    torch.testing.assert_close(create_activation("sigmoid")(torch.zeros(1)), torch.tensor([0.5]))
    torch.testing.assert_close(create_activation("tanh")(torch.tensor([1.0])), torch.tanh(torch.tensor([1.0])))
    torch.testing.assert_close(create_activation("silu")(torch.tensor([1.0])), torch.sigmoid(torch.tensor([1.0])))
    torch.testing.assert_close(create_activation("gelu")(torch.tensor([0.0, 10.0])), torch.tensor([0.0, 10.0]))


def test_unknown_name_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu' \(did you mean 'relu'\?\).*known: elu, gelu"):
        create_activation("rleu")
