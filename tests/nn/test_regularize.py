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
