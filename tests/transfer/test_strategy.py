"""transfer.strategy: which layers train, at which share of the LR; frozen layers keep their weights
AND their batch-norm statistics, and get no optimizer state."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cnntricks.config import ConfigError, ModelConfig, OptimConfig, TransferConfig
from cnntricks.nn.models import create_model
from cnntricks.train.optim import create_optimizer, set_lr
from cnntricks.transfer import layer_groups, plan_transfer

SOURCE = ["data.source=synthetic", "model.width=8", "model.depth=3", "train.epochs=1", "optim.batch_size=32",
          "train.threads=1", "--quiet"]


def model(name="fastnet", depth=3):
    return create_model(ModelConfig(name=name, width=8, depth=depth), 3, 4, (16, 16))


@pytest.mark.parametrize("name", ["fastnet", "vgg", "resnet", "mlp"])
def test_groups_are_the_head_then_the_stages_top_first(name):
    net = model(name)
    groups = layer_groups(net)
    assert groups[0] is net.head and len(groups) >= 4  # resnet: its stem is a stage too
    covered = {id(p) for g in groups for p in g.parameters()}
    assert {id(p) for p in net.parameters() if p.ndim > 1} <= covered  # every weight is in a group


def test_all_gives_discriminative_learning_rates():
    net = model()
    plan = plan_transfer(TransferConfig(strategy="all", lr_scale=0.1, lr_decay=0.5), net)
    optimizer = create_optimizer(OptimConfig(lr=0.2), net, lr_scales=plan.scales)
    set_lr(optimizer, 0.2)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    groups = layer_groups(net)
    expected = [0.2, 0.02, 0.01, 0.005]  # head, top stage (lr_scale), then x lr_decay per stage down
    for group, lr in zip(groups, expected):
        assert all(lr_of[id(p)] == pytest.approx(lr) for p in group.parameters())
    assert not plan.frozen


def test_top_freezes_all_but_the_head_and_the_top_stages():
    net = model()
    plan = plan_transfer(TransferConfig(strategy="top", stages=1), net)
    head, top, *lower = layer_groups(net)
    assert all(p.requires_grad for p in [*head.parameters(), *top.parameters()])
    assert not any(p.requires_grad for g in lower for p in g.parameters()) and plan.frozen == lower
    optimizer = create_optimizer(OptimConfig(), net, lr_scales=plan.scales)
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in [*head.parameters(), *top.parameters()]}
    net(torch.rand(4, 3, 16, 16)).sum().backward()
    optimizer.step()
    assert all(id(p) in trained for p in optimizer.state)  # no optimizer state for frozen weights
    with pytest.raises(ConfigError, match="transfer.stages=5: the model has 3 stages"):
        plan_transfer(TransferConfig(strategy="top", stages=5), model())


def test_frozen_stages_keep_their_weights_and_batch_norm_statistics(user):
    assert user.run("train", *SOURCE, "--run-dir", "source").code == 0
    result = user.run("train", *SOURCE, "model.pretrained=source", "transfer.strategy=top",
                      "transfer.stages=1", "--run-dir", "target")
    assert result.code == 0, result
    before = load_file(next((user.cwd / "source" / "checkpoints").glob("epoch-*")) / "model.safetensors")
    after = load_file(next((user.cwd / "target" / "checkpoints").glob("epoch-*")) / "model.safetensors")
    frozen = [k for k in before if k.startswith(("stages.0.", "stages.1."))]
    assert any("running_mean" in k for k in frozen)
    for key in frozen:  # weights, biases, running statistics, batch counters
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["stages.2.0.weight"], after["stages.2.0.weight"])  # the top stage trained
