import math
import typing
import warnings

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn import MODELS, ImageSizeWarning, count_parameters, create_model
from cnntricks.nn.activations import Maxout, RandomizedReLU

SHAPES = [(1, (28, 28)), (3, (32, 32)), (1, (8, 8)), (1, (13, 17))]  # (channels, (height, width))
ACTIVATIONS = ["relu", "tanh", "gelu"]
CONFIG_ACTIVATIONS = typing.get_args(typing.get_type_hints(ModelConfig)["activation"])
# The default fastnet's state-dict keys before activations and spatial dropout became options:
# checkpoints of runs with the default config must still load.
DEFAULT_FASTNET_KEYS = (
    [f"stages.0.{k}" for k in ("0.weight", *(f"2.{b}" for b in ("weight", "bias", "running_mean",
                                                                 "running_var", "num_batches_tracked")))]
    + [f"stages.{s}.{k}" for s in (1, 2) for k in (
        "0.weight", *(f"1.{b}" for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
        "3.weight", *(f"5.{b}" for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")))]
    + ["head.weight", "head.bias"])


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


# --- every ModelConfig key, in every model ------------------------------------------------------

@pytest.mark.parametrize("activation,pieces", [(a, 2) for a in CONFIG_ACTIVATIONS] + [("maxout", 3)])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_activation_builds_trains_and_backpropagates_in_every_model(name, activation, pieces):
    torch.manual_seed(0)
    model = build(name, 1, 5, (8, 8), width=4, depth=2, activation=activation, maxout_pieces=pieces).train()
    x = torch.randn(4, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (4, 5)
    assert model.forward_features(x).shape == (4, model.num_features)
    logits.sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("activation", ["prelu", "rrelu", "maxout"])
@pytest.mark.parametrize("name", ["fastnet", "vgg", "resnet"])
def test_bf16_autocast_and_channels_last(name, activation):
    model = build(name, 1, 5, (8, 8), width=4, depth=2, activation=activation).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 8, 8).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (4, 5)
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_layers_output_k_times_the_width(pieces):
    # the layer before each maxout (and its norm) computes k pieces per unit; the activation keeps 1
    fastnet = build("fastnet", 3, 10, (32, 32), activation="maxout", maxout_pieces=pieces)
    convs = [m for m in fastnet.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 16 * pieces), (16, 32 * pieces), (32, 32 * pieces), (32, 64 * pieces), (64, 64 * pieces)]
    assert [m.num_features for m in fastnet.modules() if isinstance(m, nn.BatchNorm2d)] == [c.out_channels for c in convs]
    assert all(m.pieces == pieces for m in fastnet.modules() if isinstance(m, Maxout))
    assert fastnet.num_features == 64
    mlp = build("mlp", depth=2, width=4, activation="maxout", maxout_pieces=pieces)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [32 * pieces, 32 * pieces, 10]
    # seed's slides: "doubles the number of parameters"
    relu_convs = count_parameters(build("vgg", 3, 10, (32, 32), norm="none").stages)
    assert count_parameters(build("vgg", 3, 10, (32, 32), norm="none", activation="maxout",
                                  maxout_pieces=pieces).stages) == pytest.approx(pieces * relu_convs, rel=0.01)


def test_resnet_with_maxout_projects_every_shortcut_to_k_times_the_width():
    # act2 follows residual + shortcut, so both must carry k·out channels; input has out (or less)
    model = build("resnet", activation="maxout", maxout_pieces=2, width=8)
    for block in list(model.stages)[1:]:
        projection = block.shortcut[0]
        assert isinstance(projection, nn.Conv2d) and projection.out_channels == block.conv2.out_channels
        assert block.conv2.out_channels == 2 * block.conv2.in_channels
    relu = build("resnet", width=8)
    assert isinstance(relu.stages[1].shortcut, nn.Identity)  # no change of shape: identity, as before


@pytest.mark.parametrize("mode", ["channel", "shared"])
@pytest.mark.parametrize("name", MODELS.names())
def test_prelu_has_a_slope_per_channel_of_each_layer_or_one(name, mode):
    model = build(name, width=4, activation="prelu", prelu=mode)
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    seen = {}  # PReLU -> channels of the input it gets

    def record(module, inputs):
        seen[module] = inputs[0].shape[1]

    hooks = [prelu.register_forward_pre_hook(record) for prelu in prelus]
    model(torch.randn(2, 1, 16, 16))
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(prelus) == {"fastnet": 5, "vgg": 6, "resnet": 7, "mlp": 3,
                                         "resnet18": 17, "resnet34": 33, "resnet50": 49}[name]
    for prelu, channels in seen.items():
        assert prelu.weight.numel() == (channels if mode == "channel" else 1)
        assert torch.all(prelu.weight == 0.25)


def test_leaky_slope_from_the_config_reaches_the_modules_and_he_init():
    # the seed's table: a = 5.5 is slope 1/5.5; He et al.: variance 2 / ((1 + slope²) · n)
    slope = 1 / 5.5
    model = build("fastnet", width=32, activation="leaky_relu", negative_slope=slope)
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 5 and all(m.negative_slope == slope for m in leaky)
    std = model.stages[-1][3].weight.std().item()  # 128x128x3x3, fan_in 1152
    assert std == pytest.approx(math.sqrt(2 / ((1 + slope**2) * 1152)), rel=0.005)
    assert std != pytest.approx(math.sqrt(2 / 1152), rel=0.005)  # 1.6% apart: the slope is used


@pytest.mark.parametrize("activation,variance", [("maxout", 1.0), ("prelu", 2 / (1 + 0.25**2)), ("rrelu", 2 / (1 + (2 / 11)**2))])
def test_auto_init_of_the_new_activations(activation, variance):
    # maxout: calibrated 1/n (E[max(X, Y)²] = E[X²]); prelu / rrelu: He with their slope (0.25, 2/11)
    model = build("fastnet", width=32, activation=activation)
    assert model.stages[-1][3].weight.std().item() == pytest.approx(math.sqrt(variance / 1152), rel=0.01)


def test_init_from_the_config_overrides_auto_and_the_head_stays_small():
    model = build("fastnet", width=32, activation="tanh", init="he_normal")
    assert model.stages[-1][3].weight.std().item() == pytest.approx(math.sqrt(2 / 1152), rel=0.01)
    assert model.head.weight.std().item() == pytest.approx(0.001, rel=0.2)
    # lsuv: the model does the orthogonal step (rows orthonormal, He's gain √2 for ReLU); the
    # training loop rescales with a batch
    model = build("fastnet", width=32, init="lsuv")
    weight = model.stages[-1][3].weight.flatten(1)  # (128, 1152)
    torch.testing.assert_close(weight @ weight.T, 2 * torch.eye(128), atol=1e-4, rtol=0)
    assert model.head.weight.std().item() == pytest.approx(0.001, rel=0.2)


def test_rrelu_model_is_random_in_training_and_fixed_in_evaluation():
    model = build("vgg", activation="rrelu", norm="none")
    assert sum(isinstance(m, RandomizedReLU) for m in model.modules()) == 6
    x = torch.randn(2, 1, 16, 16)
    model.train()
    assert not torch.equal(model.forward_features(x), model.forward_features(x))
    model.eval()
    assert torch.equal(model.forward_features(x), model.forward_features(x))


# --- dropout (seed §6): inverted, so the expectation is kept and evaluation needs no rescaling ---

def test_inverted_dropout_keeps_the_expectation_and_is_the_identity_in_evaluation():
    model = build("fastnet", dropout=0.5)
    x = torch.rand(4000, model.num_features) + 0.5
    model.dropout.train()
    dropped = model.dropout(x)
    assert set(torch.unique(dropped / x).tolist()) == {0.0, 2.0}  # kept units scale by 1/(1 - p)
    assert (dropped == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert dropped.mean().item() == pytest.approx(x.mean().item(), rel=0.01)
    model.dropout.eval()
    assert torch.equal(model.dropout(x), x)


@pytest.mark.parametrize("name,expected", [("fastnet", 3), ("vgg", 3), ("resnet", 4), ("mlp", 0)])
def test_spatial_dropout_ends_each_conv_stage(name, expected):
    # one Dropout2d per stage, after its last activation / pool; the mlp has no feature maps
    model = build(name, spatial_dropout=0.3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == expected and all(d.p == 0.3 for d in drops)
    if name in ("fastnet", "vgg"):
        assert all(isinstance(stage[-1], nn.Dropout2d) for stage in model.stages)
    assert isinstance(getattr(model, "stages", nn.Sequential()), nn.Sequential)
    model.eval()
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(model(x), model(x))


def test_spatial_dropout_zeroes_whole_channels_and_keeps_the_expectation():
    model = build("fastnet", spatial_dropout=0.5).train()
    drop = model.stages[0][-1]
    x = torch.rand(64, 64, 4, 4) + 0.5  # (N, C, H, W)
    maps = drop(x) / x  # each map is all 0 or all 1/(1 - p) = 2
    assert torch.all((maps == 0).all(dim=(2, 3)) | (maps == 2).all(dim=(2, 3)))
    assert (maps[:, :, 0, 0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert drop(x).mean().item() == pytest.approx(x.mean().item(), rel=0.03)


def test_default_fastnet_layout_and_state_dict_keys_are_unchanged():
    model = build("fastnet", 1, 10, (28, 28))
    assert list(model.state_dict()) == DEFAULT_FASTNET_KEYS
    assert not any(isinstance(m, (nn.Dropout2d, nn.Identity)) for m in model.stages.modules())
    # spatial dropout appends a parameter-free module: a checkpoint loads either way
    build("fastnet", 1, 10, (28, 28), spatial_dropout=0.2).load_state_dict(model.state_dict())
