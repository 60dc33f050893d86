import math
import typing
import warnings

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn import MODELS, ImageSizeWarning, count_parameters, create_model

SHAPES = [(1, (28, 28)), (3, (32, 32)), (1, (8, 8)), (1, (13, 17))]  # (channels, (height, width))
ACTIVATIONS = ["relu", "tanh", "gelu"]


def build(name="fastnet", in_channels=1, num_classes=10, image_size=(16, 16), **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageSizeWarning)
        return create_model(ModelConfig(name=name, **options), in_channels, num_classes, image_size)


def test_registry_holds_exactly_the_config_names():
    assert MODELS.names() == sorted(typing.get_args(typing.get_type_hints(ModelConfig)["name"]))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("channels,size", SHAPES)
@pytest.mark.parametrize("name", MODELS.names())
def test_output_shape_for_any_image_size(name, channels, size, activation):
    model = build(name, channels, 7, size, activation=activation).eval()
    x = torch.randn(2, channels, *size)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_is_head_of_features(name):
    model = build(name, dropout=0.5).eval()
    x = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


@pytest.mark.parametrize("name", MODELS.names())
def test_reset_head_changes_the_classes_and_keeps_the_features(name):
    model = build(name, num_classes=10).eval()
    x = torch.randn(2, 1, 16, 16)
    features = model.forward_features(x)
    model.reset_head(3)
    assert model(x).shape == (2, 3)
    torch.testing.assert_close(model.forward_features(x), features)
    assert torch.all(model.head.bias == 0)
    assert list(model.children())[-1] is model.head


def test_reset_head_keeps_dtype():
    model = build().double()
    model.reset_head(4)
    assert model.head.weight.dtype == torch.float64
    assert model(torch.randn(2, 1, 16, 16, dtype=torch.float64)).shape == (2, 4)


@pytest.mark.parametrize("name", MODELS.names())
def test_backward_reaches_every_parameter(name):
    model = build(name)
    model(torch.randn(4, 1, 16, 16)).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("name", MODELS.names())
def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch(name, activation):
    torch.manual_seed(0)
    model = build(name, activation=activation, width=8).train()
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = nn.functional.cross_entropy(model(x), y)
    before.backward()
    optimizer.step()
    after = nn.functional.cross_entropy(model(x), y)
    assert after.item() < before.item()


def test_fastnet_defaults_are_16_32_64_channels_with_pool_before_norm():
    model = build("fastnet", 3, 10, (32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 64, 64]
    assert model.num_features == 64
    stem = list(model.stages[0])
    assert [type(m) for m in stem] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    assert isinstance(model.pool, nn.AdaptiveMaxPool2d)


def test_vgg_uses_only_3x3_stride_1_pad_1_convs_and_2x2_max_pools():
    # seed §4: 3x3 filters, stride 1, zero padding; 2x2 pooling
    model = build("vgg", 3, 10, (32, 32), depth=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 6 and len(pools) == 3
    for conv in convs:
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    for pool in pools:
        assert (pool.kernel_size, pool.stride) == (2, 2)
    downsamplers = [m for m in model.modules() if "Pool" in type(m).__name__]
    assert set(map(type, downsamplers)) == {nn.MaxPool2d, nn.AdaptiveAvgPool2d}


def test_pools_stop_at_one_pixel():
    model = build("vgg", 1, 10, (8, 8), depth=5)  # 8 -> 4 -> 2 -> 1 -> 1 -> 1
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", ["fastnet", "vgg", "resnet"])
def test_conv_bias_only_without_norm(name):
    with_norm = [m for m in build(name, norm="batch").modules() if isinstance(m, nn.Conv2d)]
    without = build(name, norm="none")
    assert all(conv.bias is None for conv in with_norm)
    convs = [m for m in without.modules() if isinstance(m, nn.Conv2d)]
    assert all(conv.bias is not None and torch.all(conv.bias == 0) for conv in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())


@pytest.mark.parametrize("activation,variance", [("relu", 2.0), ("tanh", 1.0)])
def test_models_are_initialized_for_their_activation(activation, variance):
    # seed §3: He's 2/n for ReLU, calibrated 1/n for tanh
    model = build("fastnet", width=32, activation=activation)
    last_conv = model.stages[-1][3]  # 128x128x3x3: 147k weights, fan_in 1152
    assert last_conv.weight.std().item() == pytest.approx(math.sqrt(variance / 1152), rel=0.05)
    assert torch.all(model.head.bias == 0)


def test_activation_from_the_config_is_used():
    model = build("resnet", activation="tanh")
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_dropout_from_the_config_drops_in_training_only():
    model = build("mlp", dropout=0.5)
    assert model.dropout.p == 0.5
    x = torch.randn(4, 1, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_mlp_has_8_times_width_hidden_units_and_checks_its_input():
    model = build("mlp", depth=2, width=32)
    assert model.num_features == 256
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [256, 256, 10]
    with pytest.raises(ValueError, match=r"built for images of shape \(1, 16, 16\)"):
        model(torch.randn(2, 1, 8, 8))


def test_warns_for_sides_that_are_not_a_power_of_2():
    with pytest.warns(ImageSizeWarning, match="power-of-2.*32x32"):
        create_model(ModelConfig(), 1, 10, (28, 28))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model(ModelConfig(), 3, 10, (32, 32))


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="image_size"):
        create_model(ModelConfig(), 1, 10, (0, 32))
    with pytest.raises(ValueError, match="num_classes"):
        create_model(ModelConfig(), 1, 0, (32, 32))


def test_count_parameters_by_hand():
    model = build("mlp", 1, 3, (2, 2), width=1, depth=1)  # Linear(4 -> 8) + head Linear(8 -> 3)
    assert count_parameters(model) == (4 * 8 + 8) + (8 * 3 + 3)
    model.layers.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 8 * 3 + 3


@pytest.mark.parametrize("name", MODELS.names())
def test_first_loss_is_about_ln_classes(name):
    # The classifier starts at 0.001·N(0,1) (seed §3's small random numbers): near-zero logits,
    # so a fresh model's loss is ln(C), the value the doctor expects of a healthy start.
    torch.manual_seed(0)
    model = build(name, 1, 10, (16, 16))
    loss = torch.nn.functional.cross_entropy(model(torch.randn(64, 1, 16, 16)), torch.randint(0, 10, (64,)))
    assert abs(loss.item() - math.log(10)) < 0.05
