import pytest
import torch
from torch import nn

from cnntricks.nn.regularize import apply_max_norm, penalty


def test_l2_penalty_is_half_lambda_w_squared_with_gradient_lambda_w():
    # seed §6: ½·λ·w², "so that the gradient of this term with respect to w is λ·w"
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    value = penalty(model, l2=0.01)
    assert torch.isclose(value, 0.5 * 0.01 * model.weight.square().sum())
    value.backward()
    assert torch.allclose(model.weight.grad, 0.01 * model.weight)
    assert model.bias.grad is None  # biases are not penalized


def test_l1_penalty_gradient_is_lambda_sign_w():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    penalty(model, l1=0.1).backward()
    assert torch.allclose(model.weight.grad, 0.1 * model.weight.sign())


def test_no_penalty_computes_nothing():
    assert penalty(nn.Linear(2, 2)) == 0.0


def test_max_norm_holds_after_every_step_of_a_high_lr_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(torch.randn(16, 3, 8, 8)), torch.randint(0, 4, (16,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        apply_max_norm(model, 3.0)  # seed §6: c of 3 or 4
        for weight in (model[0].weight, model[3].weight):
            norms = weight.flatten(1).norm(dim=1)
            assert torch.all(norms <= 3.0 + 1e-5)
    assert torch.any(model[3].weight.flatten(1).norm(dim=1) > 2.9)  # the constraint was active


def sparse_regression(l1=0.0, l2=0.0, steps=3000, lr=0.01):
    """SGD on a linear model where 3 of 20 inputs matter; returns the 17 irrelevant weights."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 20, generator=generator)
    truth = torch.zeros(20)
    truth[:3] = torch.tensor([2.0, -1.5, 1.0])
    y = x @ truth + torch.randn(200, generator=generator)
    model = nn.Linear(20, 1, bias=False)
    nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = (model(x).squeeze(1) - y).square().mean() / 2 + penalty(model, l1=l1, l2=l2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.weight.detach()[0, 3:]


def test_l1_drives_irrelevant_weights_to_zero_where_l2_only_shrinks_them():
    with_l1, with_l2 = sparse_regression(l1=0.2), sparse_regression(l2=0.2)
    # L1's subgradient steps leave a weight it zeroes within lr·λ = 2e-3 of 0; L2 keeps the fit to noise
    assert (with_l1.abs() < 2e-3).float().mean() >= 0.8
    assert (with_l2.abs() < 2e-3).float().mean() <= 0.2
    assert with_l2.abs().mean() > 10 * with_l1.abs().mean()


def test_l1_starts_after_its_share_of_training_and_penalize_all_includes_biases():
    from cnntricks.nn.regularize import l1_active
    assert not l1_active(79, 100, 0.8) and l1_active(80, 100, 0.8) and l1_active(0, 100, 0.0)
    model = nn.Linear(5, 3)
    penalty(model, l2=0.01, penalize="all").backward()
    assert torch.allclose(model.bias.grad, 0.01 * model.bias)
    with pytest.raises(ValueError, match="penalize"):
        penalty(model, l2=0.01, penalize="biases")


def decayed_weight(name, decay, steps=10, lr=0.1, wd=0.1, momentum=0.9):
    """A weight whose loss gradient is 0, so only weight decay moves it."""
    from cnntricks.config import OptimConfig
    from cnntricks.train.optim import apply_decoupled_decay, create_optimizer
    model = nn.Linear(1, 1, bias=False)
    nn.init.ones_(model.weight)
    optimizer = create_optimizer(OptimConfig(name=name, lr=lr, momentum=momentum, weight_decay=wd,
                                             decay=decay), model)
    for _ in range(steps):
        optimizer.zero_grad()
        (model.weight * 0).sum().backward()
        apply_decoupled_decay(optimizer)
        optimizer.step()
    return model.weight.item(), type(optimizer).__name__


def test_decoupled_decay_is_w_times_one_minus_lr_lambda_and_coupled_goes_through_momentum():
    decoupled, _ = decayed_weight("sgd", "decoupled")
    assert decoupled == pytest.approx((1 - 0.1 * 0.1) ** 10, rel=1e-6)
    coupled, kind = decayed_weight("sgd", "coupled")
    assert kind == "SGD" and coupled < decoupled - 0.05  # momentum accumulates λ·w: stronger
    plain, _ = decayed_weight("sgd", "coupled", momentum=0.0)
    assert plain == pytest.approx((1 - 0.1 * 0.1) ** 10, rel=1e-6)  # plain SGD: the two agree
    assert decayed_weight("adamw", "auto")[1] == "AdamW"
    assert decayed_weight("adamw", "coupled")[1] == "Adam"
    assert decayed_weight("adamw", "decoupled")[0] == pytest.approx((1 - 0.1 * 0.1) ** 10, rel=1e-5)


def test_max_norm_works_on_channels_last_conv_weights():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv.weight.mul_(100)
    apply_max_norm(conv, 3.0)
    assert torch.allclose(conv.weight.flatten(1).norm(dim=1), torch.full((4,), 3.0), atol=1e-4)
