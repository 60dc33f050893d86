"""The doctor from the command line: after training, on its own, and acting during training."""
from __future__ import annotations

import json

from e2e_helpers import SMALL, read_history, read_json


def events(run, kind):
    return [r for r in read_history(run) if r.get("kind") == "event" and r.get("event") == kind]


def test_warn_mode_announces_a_finding_once_and_the_doctor_command_reads_it(user):
    result = user.run("train", *SMALL, "train.epochs=3", "preprocess.normalize=none", "--run-dir", "run")
    assert result.code == 0, result
    run = user.cwd / "run"
    found = events(run, "finding")
    assert [e["id"] for e in found].count("unnormalized_input") == 1 and found[0]["epoch"] == 1
    assert "unnormalized_input" in result.out and "preprocess.normalize=standardize" in result.out
    doctor = user.run("doctor", "run", "--json")
    assert doctor.code == 0
    listed = {f["id"]: f for f in json.loads(doctor.out)}
    assert listed["unnormalized_input"]["severity"] == "error"
    assert set(listed["unnormalized_input"]) >= {"id", "severity", "title", "evidence", "explanation", "advice",
                                                 "change", "figure", "step", "epoch"}
    assert user.run("doctor", "run", "--fail-on", "error").code == 5


def test_stop_mode_ends_the_run_cleanly_with_the_finding_as_reason(user):
    result = user.run("train", *SMALL, "train.epochs=4", "preprocess.normalize=none", "doctor.mode=stop",
                      "--run-dir", "run")
    assert result.code == 0, result
    summary = read_json(user.cwd / "run" / "summary.json")
    assert summary["stop_reason"] == "doctor:unnormalized_input" and summary["epochs"] == 1


def test_fix_mode_rolls_back_a_nan_and_halves_the_lr_until_it_trains(user):
    result = user.run("train", *SMALL, "optim.lr=15", "schedule.warmup_epochs=0", "doctor.mode=fix",
                      "--run-dir", "run")
    assert result.code == 0, result
    run = user.cwd / "run"
    rollbacks = [e for e in events(run, "remedy") if e.get("what") == "rollback"]
    assert rollbacks and all(e["after"] == e["before"] / 2 for e in rollbacks)
    assert read_json(run / "summary.json")["stop_reason"] == "completed"
    lrs = [r["lr"] for r in read_history(run) if r.get("kind") == "batch"]
    assert max(lrs[-5:]) < 15 / 2  # training went on at the halved learning rate


def test_off_mode_writes_no_finding_events_and_prints_no_verdict(user):
    result = user.run("train", *SMALL, "preprocess.normalize=none", "doctor.mode=off", "--run-dir", "run")
    assert result.code == 0 and not events(user.cwd / "run", "finding") and "doctor:" not in result.out
