"""transfer.strategy: which layers train, at which share of the LR; frozen layers keep their weights
AND their batch-norm statistics, and get no optimizer state."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
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


def test_frozen_stages_keep_their_weights_and_batch_norm_statistics(user, source):
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


# ---- linear, linear@stageK, lp-ft, gradual, scratch ---------------------------------------------

def weights_of(run_dir):
    return load_file(next((run_dir / "checkpoints").glob("epoch-*")) / "model.safetensors")


def test_fit_classifier_folds_the_standardization_into_the_head():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cnntricks.transfer.head import fit_classifier
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * [1, 10, 0.1, 3, 1, 5] + [0, 4, -2, 1, 0, 7]
    y = (x[:, 0] + x[:, 1] / 10 > 0.4).astype(int) + 2 * (x[:, 3] > 1)  # 4 classes
    weight, bias = fit_classifier(x, y, classes=5)
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=0)).fit(x, y)
    logits = x @ weight.T + bias
    np.testing.assert_allclose(logits[:, :4], reference.decision_function(x), rtol=1e-3, atol=1e-3)
    assert (logits[:, 4] < -20).all()  # class 4 never seen: never predicted
    two = fit_classifier(x, (x[:, 0] > 0).astype(int), classes=2)  # scikit-learn keeps one row for two classes
    assert ((x @ two[0].T + two[1]).argmax(1) == (x[:, 0] > 0)).mean() > 0.95


def test_linear_fits_the_head_once_and_trains_nothing_else(user, source):
    result = user.run("train", *SOURCE, "train.epochs=3", "model.pretrained=source", "transfer.strategy=linear",
                      "--run-dir", "target")
    assert result.code == 0, result
    summary = json.loads((user.cwd / "target" / "summary.json").read_text())
    assert summary["stop_reason"] == "linear_classifier" and summary["epochs"] == 1 and summary["steps"] == 0
    assert summary["test_acc"] > 0.5 and summary["transfer"]["strategy"] == "linear"
    before, after = weights_of(source), weights_of(user.cwd / "target")
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("head."))
    events = [json.loads(line) for line in (user.cwd / "target" / "history.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "head_fitted" for e in events)
    doctor = user.run("doctor", "target", "--json")
    assert all(f["severity"] != "warning" for f in json.loads(doctor.out)), doctor.out
    assert user.run("evaluate", "target").code == 0


def test_linear_at_an_earlier_stage_cuts_the_model_there(user, source):
    result = user.run("train", *SOURCE, "model.pretrained=source", "transfer.strategy=linear@stage1",
                      "--run-dir", "target")
    assert result.code == 0, result
    weights = weights_of(user.cwd / "target")
    assert not any(k.startswith("stages.2.") for k in weights)  # above stage 1: gone
    assert weights["head.weight"].shape == (4, 16)  # stage 1 of width 8: 16 channels
    assert torch.equal(weights["stages.1.0.weight"], weights_of(source)["stages.1.0.weight"])
    assert user.run("evaluate", "target").code == 0
    bad = user.run("train", *SOURCE, "model.pretrained=source", "transfer.strategy=linear@stage3", "--run-dir", "t2")
    assert bad.code == 2 and "the model has stages 0 to 2" in bad.err


def test_a_strategy_that_is_not_one_names_the_forms(user):
    result = user.run("train", *SOURCE, "transfer.strategy=linear@top", "--run-dir", "t")
    assert result.code == 2 and "linear@stageK" in result.err


@pytest.mark.slow  # the mechanics: test_every_strategy_on_every_conv_model_of_the_zoo
def test_lp_ft_starts_from_the_fitted_head_then_trains_every_layer(user, source):
    result = user.run("train", *SOURCE, "model.pretrained=source", "transfer.strategy=lp-ft", "--run-dir", "target")
    assert result.code == 0, result
    summary = json.loads((user.cwd / "target" / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] > 0
    events = [json.loads(line) for line in (user.cwd / "target" / "history.jsonl").read_text().splitlines()]
    fitted = next(e for e in events if e.get("event") == "head_fitted")
    assert fitted["step"] == 0
    assert not torch.equal(weights_of(source)["stages.0.0.weight"], weights_of(user.cwd / "target")["stages.0.0.weight"])


def test_decoupled_decay_leaves_tensors_without_a_gradient_alone():
    from cnntricks.train.optim import apply_decoupled_decay
    net = model()
    plan = plan_transfer(TransferConfig(strategy="gradual"), net)
    optimizer = create_optimizer(OptimConfig(decay="decoupled", weight_decay=0.5), net, lr_scales=plan.scales)
    set_lr(optimizer, 0.1)
    layer_groups(net)[-1].requires_grad_(False)  # the bottom stage frozen, as gradual's first epochs
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.rand(4, 3, 16, 16)).sum().backward()
    apply_decoupled_decay(optimizer)
    after = net.state_dict()
    assert torch.equal(before["stages.0.0.weight"], after["stages.0.0.weight"])  # frozen: not shrunk
    assert not torch.equal(before["stages.2.0.weight"], after["stages.2.0.weight"])  # trained: shrunk


def test_gradual_unfreezes_one_stage_per_epoch_from_the_top():
    from cnntricks.transfer import Freeze
    net = model()
    plan = plan_transfer(TransferConfig(strategy="gradual"), net)
    head, top, middle, bottom = layer_groups(net)
    optimizer = create_optimizer(OptimConfig(), net, lr_scales=plan.scales)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    freeze = Freeze(plan)
    for epoch, trainable in [(0, [head]), (1, [head, top]), (2, [head, top, middle]), (3, [head, top, middle, bottom])]:
        net.train()
        freeze.on_epoch_start(SimpleNamespace(state=SimpleNamespace(epoch=epoch)))
        for group in (head, top, middle, bottom):
            on = any(group is t for t in trainable)
            assert all(p.requires_grad == on for p in group.parameters()), (epoch, group)
            assert all(m.training == on for m in group.modules()), (epoch, group)  # frozen: BN in eval


@pytest.mark.slow  # the mechanics: test_every_strategy_on_every_conv_model_of_the_zoo
def test_gradual_keeps_frozen_stages_unchanged_even_with_decoupled_decay(user, source):
    result = user.run("train", *SOURCE, "train.epochs=2", "model.pretrained=source", "transfer.strategy=gradual",
                      "optim.decay=decoupled", "--run-dir", "target")
    assert result.code == 0, result
    before, after = weights_of(source), weights_of(user.cwd / "target")
    for key in before:  # epoch 1: the head; epoch 2: the head and stage 2; stages 0 and 1 never
        if key.startswith(("stages.0.", "stages.1.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["stages.2.0.weight"], after["stages.2.0.weight"])


@pytest.mark.slow  # the mechanics: test_every_strategy_on_every_conv_model_of_the_zoo
def test_scratch_does_not_load_the_weights(user, source):
    result = user.run("train", *SOURCE, "train.epochs=1", "model.pretrained=source", "transfer.strategy=scratch",
                      "--run-dir", "target")
    assert result.code == 0, result
    events = [json.loads(line) for line in (user.cwd / "target" / "history.jsonl").read_text().splitlines()]
    assert "weights not loaded" in next(e for e in events if e.get("event") == "pretrained")["message"]


CONV_MODELS = ["fastnet", "vgg", "resnet", "resnet18"]


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("strategy", ["all", "top", "linear", "linear@stage1", "lp-ft", "gradual", "scratch"])
def test_every_strategy_on_every_conv_model_of_the_zoo(name, strategy):
    from cnntricks.transfer import Freeze, cut_above_stage, fit_head, parse_strategy
    torch.manual_seed(0)
    net = create_model(ModelConfig(name=name, width=8, depth=3), 3, 4, (16, 16))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _, stage = parse_strategy(strategy)
    if stage is not None:
        cut_above_stage(net, stage, (3, 16, 16))
        assert net.head.in_features == net.num_features and net.cut_away
    plan = plan_transfer(TransferConfig(strategy=strategy), net)
    images, labels = torch.rand(16, 3, 16, 16), torch.arange(16) % 4
    if plan.fit_head:
        fitted = fit_head(net, lambda x: x.float() / 255, (images * 255).to(torch.uint8), labels)
        assert fitted["acc"] > 0.5
    optimizer = create_optimizer(OptimConfig(lr=0.05), net, lr_scales=plan.scales)
    net.train()
    Freeze(plan).on_epoch_start(SimpleNamespace(state=SimpleNamespace(epoch=0)))
    set_lr(optimizer, 0.05)
    torch.nn.functional.cross_entropy(net(images), labels).backward()
    optimizer.step()
    after = net.state_dict()
    frozen = {id(p) for m in plan.frozen_at(0) for p in m.state_dict(keep_vars=True).values()}
    names = {id(v): k for k, v in net.state_dict(keep_vars=True).items()}
    for key in (names[i] for i in frozen):  # weights and batch-norm statistics of the frozen groups
        assert torch.equal(before[key], after[key]), key
    head = names[id(net.head.weight)]  # fc.weight in resnet18
    assert before[head].shape != after[head].shape or not torch.equal(before[head], after[head])  # the head trained
