"""The doctor during training: fix-mode remedies in place and by restart, their spacing, and their state."""
from __future__ import annotations

import json

from torch import nn

from cnntricks import config
from cnntricks.config import OptimConfig, ScheduleConfig
from cnntricks.doctor import Finding
from cnntricks.doctor.act import MAX_RESTARTS, REMEDY_EVERY, TrainingDoctor, worth_keeping
from cnntricks.rundir import archive_attempt, read_restarts
from cnntricks.train.optim import create_optimizer
from cnntricks.train.schedule import Schedule

GOOD = 0.80  # a best validation accuracy worth keeping (10 classes: the bar is 0.55)
BAD = 0.12


def finding(id_, change=None):
    return Finding(id=id_, severity="warning", title="t", evidence="e", explanation="x", advice="a",
                   change=change or {})


def setup():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    optimizer = create_optimizer(OptimConfig(weight_decay=5e-4), model)
    schedule = Schedule(ScheduleConfig(name="constant", warmup_epochs=0), 0.1, 100, 10)
    return model, optimizer, schedule


def test_the_restart_bar_is_the_underfitting_bar():
    assert worth_keeping(0.55, 10) and not worth_keeping(0.549, 10) and not worth_keeping(None, 10)
    assert worth_keeping(0.75, 2) and not worth_keeping(0.74, 2)  # chance 0.5, half the way to 1


def test_in_place_remedies_change_what_they_say_and_log_before_and_after(tmp_path):
    _, optimizer, schedule = setup()
    doctor = TrainingDoctor("fix", tmp_path)
    found = [finding("plateau"), finding("overfitting"), finding("dead_relu", {"optim.lr": 0.01})]
    assert doctor.restart_for(found, 3, config.Config(), GOOD) is None  # a run worth keeping
    events = doctor.remedies(found, 3, schedule, optimizer)
    by_what = {(e["id"], e["what"]): e for e in events}
    assert by_what[("plateau", "lr_scale")]["after"] == 0.5
    assert by_what[("dead_relu", "lr_scale")]["after"] == 0.25  # both halvings: a run worth keeping
    assert optimizer.param_groups[0]["weight_decay"] == by_what[("overfitting", "weight_decay")]["after"] == 1e-3
    # the same remedy waits REMEDY_EVERY epochs before it is applied again
    assert doctor.remedies([finding("plateau")], 3 + REMEDY_EVERY - 1, schedule, optimizer) == []
    assert doctor.remedies([finding("plateau")], 3 + REMEDY_EVERY, schedule, optimizer)


def test_a_wrong_config_in_a_run_with_nothing_to_keep_starts_again_with_the_findings_changes(tmp_path):
    _, optimizer, schedule = setup()
    cfg = config.load(None, ["model.init=zeros", "optim.lr=10"])
    doctor = TrainingDoctor("fix", tmp_path)
    found = [finding("lr_diverged", {"optim.lr": 1.0}), finding("symmetric_init", {"model.init": "auto"}),
             finding("dead_relu", {"optim.lr": 0.5, "model.activation": "leaky_relu"}), finding("plateau")]
    restart = doctor.restart_for(found, 1, cfg, BAD)
    new, event = restart.config, restart.event
    assert (new.optim.lr, new.model.init, new.model.activation) == (1.0, "auto", "leaky_relu")  # first finding wins
    assert (cfg.optim.lr, cfg.model.init) == (10.0, "zeros")  # the running config is not touched
    assert event["what"] == "restart" and event["ids"] == ["lr_diverged", "symmetric_init", "dead_relu"]
    assert event["before"] == {"optim.lr": 10.0, "model.init": "zeros", "model.activation": "relu"}
    assert schedule.plateau_scale == 1.0  # nothing in place


def test_no_restart_when_the_run_is_worth_keeping_or_the_change_is_already_made(tmp_path):
    _, optimizer, schedule = setup()
    doctor = TrainingDoctor("fix", tmp_path)
    assert doctor.restart_for([finding("bad_init", {"model.init": "auto"})], 1, config.Config(), BAD) is None
    assert doctor.remedies([finding("bad_init", {"model.init": "auto"})], 1, schedule, optimizer) == []  # init is auto already
    found = [finding("dead_relu", {"optim.lr": 0.01})]
    assert doctor.restart_for(found, 1, config.Config(), GOOD) is None
    assert [e["what"] for e in doctor.remedies(found, 1, schedule, optimizer)] == ["lr_scale"]
    warn = TrainingDoctor("warn", tmp_path)
    found = [finding("lr_diverged", {"optim.lr": 0.01})]
    assert warn.restart_for(found, 1, config.Config(), BAD) is None and warn.remedies(found, 1, schedule, optimizer) == []


def test_restarts_stop_after_max_restarts(tmp_path):
    _, optimizer, schedule = setup()
    for n in range(MAX_RESTARTS):
        archive_attempt(tmp_path, {"event": "remedy", "what": "restart", "message": f"r{n}"})
    doctor, found = TrainingDoctor("fix", tmp_path), [finding("lr_too_low", {"optim.lr": 1.0})]
    assert doctor.restart_for(found, 1, config.Config(), BAD) is None
    events = doctor.remedies(found, 1, schedule, optimizer)
    assert [e["what"] for e in events] == ["lr_scale"] and schedule.plateau_scale == 2.0  # in place instead


def test_an_abandoned_attempt_is_kept_and_the_run_directory_cleared(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch-0001").mkdir(parents=True)
    (run / "checkpoints" / "epoch-0001" / "model.safetensors").write_bytes(b"x")
    for name in ("config.yaml", "history.jsonl", "stats.jsonl"):
        (run / name).write_text(name)
    kept = archive_attempt(run, {"event": "remedy", "what": "restart", "message": "m", "at_epoch": 1})
    assert kept == run / "attempts" / "1" and not (run / "checkpoints").exists()
    assert (kept / "history.jsonl").read_text() == "history.jsonl" and (kept / "config.yaml").is_file()
    assert json.loads((kept / "restart.json").read_text())["attempt"] == 1
    archive_attempt(run, {"event": "remedy", "what": "restart", "message": "n"})
    assert [r["message"] for r in read_restarts(run)] == ["m", "n"]
    assert sorted(p.name for p in (run / "attempts").iterdir()) == ["1", "2"]  # no temporary folders left


def test_warn_mode_changes_nothing_and_state_survives_a_resume(tmp_path):
    _, optimizer, schedule = setup()
    assert TrainingDoctor("warn", tmp_path).remedies([finding("plateau")], 1, schedule, optimizer) == []
    assert schedule.plateau_scale == 1.0
    doctor = TrainingDoctor("fix", tmp_path)
    doctor.remedies([finding("dead_relu")], 2, schedule, optimizer)
    resumed = TrainingDoctor("fix", tmp_path)
    resumed.load_state_dict(doctor.state_dict())
    assert resumed.remedied == {"dead_relu": 2}
