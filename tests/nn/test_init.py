import math

import pytest
import torch
from torch import nn

from cnntricks.nn import INITS, initialize, scheme_for
from cnntricks.nn.activations import NEGATIVE_SLOPE
from cnntricks.nn.init import SYMMETRIC, fan_out, lsuv_, orthogonal_gain


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


# --- every scheme in the registry -------------------------------------------------------------

SCHEMES = INITS.names()


def small_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
                         nn.LayerNorm(10))


def test_the_registry_holds_the_seed_and_the_modern_schemes():
    assert set(SCHEMES) == {"zeros", "constant", "small_normal", "small_uniform", "calibrated",
                            "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "orthogonal", "lsuv"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_fills_conv_and_linear_and_resets_biases_and_norms(scheme):
    model = small_model()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(2, 3)  # a value no scheme produces
    initialize(model, scheme, "relu", generator=torch.Generator().manual_seed(0))
    conv, bn, linear, ln = model[0], model[1], model[3], model[4]
    for layer in (conv, linear):
        assert torch.all(layer.weight.abs() < 2) and torch.all(layer.bias == 0)
        assert torch.isfinite(layer.weight).all()
    for norm in (bn, ln):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_repeats_from_its_generator(scheme):
    def weights(seed):
        model = initialize(small_model(), scheme, "relu", generator=torch.Generator().manual_seed(seed))
        return torch.cat([model[0].weight.flatten(), model[3].weight.flatten()])
    assert torch.equal(weights(1), weights(1))
    assert torch.equal(weights(1), weights(2)) == (scheme in SYMMETRIC)


def test_zeros_and_constant_give_one_value():
    assert torch.all(initialize(nn.Linear(8, 8), "zeros").weight == 0)
    assert torch.all(initialize(nn.Linear(8, 8), "constant").weight == 0.01)


def measured_std(layer: nn.Module, scheme: str, activation: str = "relu", **options) -> float:
    initialize(layer, scheme, activation, torch.Generator().manual_seed(0), **options)
    return layer.weight.std().item()


# big layers: 590k (conv) or 1M (linear) weights estimate a std to well under 1%
@pytest.mark.parametrize("scheme, expected", [
    ("small_normal", 0.001), ("small_uniform", 0.001),  # seed §3: 0.001 × N(0,1); uniform bound 0.001·√3
    ("calibrated", 1 / math.sqrt(2304)), ("he_normal", math.sqrt(2 / 2304)), ("he_uniform", math.sqrt(2 / 2304)),
    ("xavier_normal", math.sqrt(2 / (2304 + 2304))), ("xavier_uniform", math.sqrt(2 / (2304 + 2304))),
])
def test_measured_std_matches_the_formula_on_a_conv(scheme, expected):
    assert measured_std(big_conv(), scheme) == pytest.approx(expected, rel=0.01)


def test_uniform_schemes_stay_inside_their_bounds_and_fill_them():
    for scheme, bound in [("small_uniform", 0.001 * math.sqrt(3)), ("he_uniform", math.sqrt(6 / 1024)),
                          ("xavier_uniform", math.sqrt(6 / (1024 + 512)))]:
        w = initialize(nn.Linear(1024, 512), scheme, "relu", torch.Generator().manual_seed(0)).weight
        assert w.abs().max().item() <= bound and w.abs().max().item() > 0.999 * bound, scheme


def test_xavier_uses_fan_out_of_linear_and_grouped_conv():
    linear = nn.Linear(1000, 250)
    assert fan_out(linear.weight) == 250
    assert measured_std(linear, "xavier_normal") == pytest.approx(math.sqrt(2 / 1250), rel=0.01)
    conv = nn.Conv2d(256, 512, 3, groups=4)  # fan_in 64·9 = 576; fan_out 512·9 / 4 = 1152
    assert fan_out(conv.weight, groups=4) == 1152
    assert measured_std(conv, "xavier_normal") == pytest.approx(math.sqrt(2 / (576 + 1152)), rel=0.01)


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5])
def test_he_for_a_leaky_slope_a_is_sqrt_2_over_1_plus_a2_n(slope):
    # models pass leaky_relu's configured slope as negative_slope; it overrides the default 0.01
    expected = math.sqrt(2 / ((1 + slope**2) * 2304))
    assert measured_std(big_conv(), "he_normal", "leaky_relu", negative_slope=slope) == pytest.approx(expected, rel=0.01)
    assert measured_std(big_conv(), "he_uniform", "leaky_relu", negative_slope=slope) == pytest.approx(expected, rel=0.01)


def test_orthogonal_rows_are_orthonormal_times_the_gain():
    for activation, slope, gain in [("relu", None, math.sqrt(2)), ("tanh", None, 1.0), ("sigmoid", None, 1.0),
                                    ("leaky_relu", 0.2, math.sqrt(2 / 1.04))]:
        assert orthogonal_gain(activation, slope) == pytest.approx(gain)
        conv = initialize(nn.Conv2d(32, 64, 3), "orthogonal", activation, torch.Generator().manual_seed(0),
                          negative_slope=slope)
        rows = conv.weight.reshape(64, -1)  # (out, fan_in) = (64, 288)
        assert torch.allclose(rows @ rows.T, gain**2 * torch.eye(64), atol=1e-5), activation


def test_lsuv_without_data_is_its_orthogonal_step():
    a = initialize(nn.Linear(64, 32), "lsuv", "relu", torch.Generator().manual_seed(3))
    b = initialize(nn.Linear(64, 32), "orthogonal", "relu", torch.Generator().manual_seed(3))
    assert torch.equal(a.weight, b.weight)


# --- the behaviour each scheme exists for -----------------------------------------------------

def hidden_rows_after_training(scheme: str, steps: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, gradient) of each hidden layer of a 3-layer ReLU MLP after `steps` SGD steps."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    initialize(mlp, scheme, "relu", torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    return [(mlp[i].weight.detach(), mlp[i].weight.grad) for i in (0, 2)]


def rows_identical(matrix: torch.Tensor) -> bool:
    return torch.allclose(matrix, matrix[:1].expand_as(matrix))


@pytest.mark.parametrize("scheme", ["zeros", "constant"])
def test_symmetric_init_gives_every_unit_of_a_layer_the_same_gradient_forever(scheme):
    # seed §3: "they will also all compute the same gradients ... undergo the exact same parameter
    # updates": after training, each hidden layer's units are still copies of one another
    for weight, grad in hidden_rows_after_training(scheme):
        assert rows_identical(grad) and rows_identical(weight)
    if scheme == "constant":  # not a dead net: the gradients are there, they are just all the same
        assert all(grad.abs().sum() > 0 for _, grad in hidden_rows_after_training(scheme))


def test_random_init_breaks_the_symmetry():
    for weight, grad in hidden_rows_after_training("small_normal"):
        assert not rows_identical(grad) and not rows_identical(weight)


def activations_through(depth: int, scheme: str, activation: str, generator: torch.Generator,
                        width: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of a plain net of `depth` Linear + activation layers, no normalization."""
    function = {"relu": torch.relu, "tanh": torch.tanh}[activation]
    x = torch.randn(256, width, generator=generator)
    h = x
    for _ in range(depth):
        h = function(initialize(nn.Linear(width, width), scheme, activation, generator)(h))
    return x, h


def relu_signal_ratio(scheme: str, depth: int = 20, nets: int = 8) -> float:
    """Mean over `nets` networks of E[h²] after `depth` ReLU layers / E[x²] of the input. E[h²] is
    what He et al. derive as preserved; one width-256 net's gain scatters ~2x around it, so average."""
    generator = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(nets):
        x, h = activations_through(depth, scheme, "relu", generator)
        ratios.append(h.pow(2).mean().item() / x.pow(2).mean().item())
    return sum(ratios) / nets


def test_he_keeps_relu_activations_through_20_layers_and_small_normal_kills_them():
    assert 0.5 < relu_signal_ratio("he_normal") < 2
    assert relu_signal_ratio("small_normal", nets=1) < 1 / 100  # in fact ~ (0.001² · 256 / 2)^20: zero


def test_calibrated_keeps_tanh_spread_through_10_layers_where_small_normal_collapses():
    generator = torch.Generator().manual_seed(0)
    _, calibrated_out = activations_through(10, "calibrated", "tanh", generator)
    _, small_out = activations_through(10, "small_normal", "tanh", generator)
    assert calibrated_out.std().item() > 0.15  # measured 0.23: tanh shrinks slowly, never to 0
    assert small_out.std().item() < 1e-6  # each layer multiplies the std by ~0.001·√256 = 0.016


def test_lsuv_gives_every_layer_unit_output_variance_on_its_batch():
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 8 * 8, 64), nn.Tanh(), nn.Linear(64, 32))
    model.train()
    batch = 3 * torch.randn(64, 3, 8, 8, generator=generator) + 1
    lsuv_(model, batch, tol=0.1, generator=generator)
    assert model.training  # mode restored
    variances = []
    hooks = [layer.register_forward_hook(lambda m, i, out: variances.append(out.var().item()))
             for layer in model if isinstance(layer, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    assert len(variances) == 4 and all(abs(v - 1) < 0.1 for v in variances), variances


def test_lsuv_leaves_the_classifier_head_alone():
    from cnntricks.config import ModelConfig
    from cnntricks.nn import create_model
    model = create_model(ModelConfig(name="mlp", width=4, depth=2, norm="none"), 1, 10, (8, 8))
    head = model.head.weight.clone()
    lsuv_(model, torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(model.head.weight, head)
    assert model.head.weight.std().item() == pytest.approx(0.001, rel=0.2)  # still 0.001·N(0,1)
