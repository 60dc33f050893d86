"""The doctor during training: fix-mode remedies, their spacing, and their state across a resume."""
from __future__ import annotations

import torch
from torch import nn

from cnntricks.config import OptimConfig, ScheduleConfig
from cnntricks.doctor import Finding
from cnntricks.doctor.act import REMEDY_EVERY, TrainingDoctor, leaky_swap
from cnntricks.train.optim import create_optimizer
from cnntricks.train.schedule import Schedule


def finding(id_):
    return Finding(id=id_, severity="warning", title="t", evidence="e", explanation="x", advice="a")


def setup():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    optimizer = create_optimizer(OptimConfig(weight_decay=5e-4), model)
    schedule = Schedule(ScheduleConfig(name="constant", warmup_epochs=0), 0.1, 100, 10)
    return model, optimizer, schedule


def test_fix_mode_remedies_change_what_they_say_and_log_before_and_after(tmp_path):
    model, optimizer, schedule = setup()
    doctor = TrainingDoctor("fix", tmp_path)
    events = doctor.remedies([finding("plateau"), finding("overfitting"), finding("dead_relu")], 3,
                             schedule, optimizer, model)
    by_what = {(e["id"], e["what"]): e for e in events}
    assert by_what[("plateau", "lr_scale")]["after"] == 0.5
    assert by_what[("dead_relu", "lr_scale")]["after"] == 0.25  # both halvings
    assert optimizer.param_groups[0]["weight_decay"] == by_what[("overfitting", "weight_decay")]["after"] == 1e-3
    assert by_what[("dead_relu", "activation")]["after"].startswith("leaky_relu")
    assert not any(type(m) is nn.ReLU for m in model.modules())
    assert sum(isinstance(m, nn.LeakyReLU) for m in model.modules()) == 2
    # the same remedy waits REMEDY_EVERY epochs before it is applied again
    assert doctor.remedies([finding("plateau")], 3 + REMEDY_EVERY - 1, schedule, optimizer, model) == []
    assert doctor.remedies([finding("plateau")], 3 + REMEDY_EVERY, schedule, optimizer, model)


def test_warn_mode_changes_nothing_and_state_survives_a_resume(tmp_path):
    model, optimizer, schedule = setup()
    assert TrainingDoctor("warn", tmp_path).remedies([finding("plateau")], 1, schedule, optimizer, model) == []
    assert schedule.plateau_scale == 1.0
    doctor = TrainingDoctor("fix", tmp_path)
    doctor.remedies([finding("dead_relu")], 2, schedule, optimizer, model)
    resumed = TrainingDoctor("fix", tmp_path)
    resumed.load_state_dict(doctor.state_dict())
    fresh, _, _ = setup()  # a resumed run rebuilds the model from its config: ReLUs again
    resumed.reapply(fresh)
    assert not any(type(m) is nn.ReLU for m in fresh.modules())
    assert resumed.remedied == {"dead_relu": 2}


def test_leaky_swap_keeps_the_state_dict_and_revives_gradients():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every unit dead
    keys = set(model.state_dict())
    x = torch.randn(8, 2)
    model(x).sum().backward()
    assert model[0].weight.grad.abs().sum() == 0
    assert leaky_swap(model) == 1 and set(model.state_dict()) == keys
    model.zero_grad()
    model(x).sum().backward()
    assert model[0].weight.grad.abs().sum() > 0


def test_a_bad_initialization_is_started_again_once_with_the_seeds_scheme(tmp_path):
    from cnntricks.config import ModelConfig
    from cnntricks.nn.models import create_model
    model = create_model(ModelConfig(name="mlp", depth=3, init="zeros"), 1, 10, (8, 8))
    optimizer = create_optimizer(OptimConfig(), model)
    schedule = Schedule(ScheduleConfig(name="constant", warmup_epochs=0), 0.1, 100, 10)
    assert model.layers[1].weight.abs().sum() == 0
    doctor = TrainingDoctor("fix", tmp_path)
    events = doctor.remedies([finding("symmetric_init")], 1, schedule, optimizer, model)
    assert [e["what"] for e in events] == ["init"] and events[0]["before"] == "zeros"
    weight = model.layers[1].weight
    assert 0.5 < weight.std().item() * (weight.shape[1] / 2) ** 0.5 < 1.5  # He: sqrt(2 / fan_in)
    assert doctor.remedies([finding("symmetric_init")], 9, schedule, optimizer, model) == []  # once
