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


def test_fix_mode_rolls_back_a_nan_halves_the_lr_then_starts_again_at_a_tenth(user):
    result = user.run("train", *SMALL, "optim.lr=15", "schedule.warmup_epochs=0", "doctor.mode=fix",
                      "--run-dir", "run")
    assert result.code == 0, result
    run = user.cwd / "run"
    first = run / "attempts" / "1"  # the abandoned attempt, kept as it was
    rollbacks = [e for e in read_history(first) if e.get("event") == "remedy" and e.get("what") == "rollback"]
    assert rollbacks and all(e["after"] == e["before"] / 2 for e in rollbacks)
    for folder in (first, run):  # metrics.csv holds the history's epochs, after rollbacks and the restart
        import csv
        with (folder / "metrics.csv").open(newline="") as f:
            table = [(int(r["epoch"]), float(r["train_loss"]) if r["train_loss"] else None) for r in csv.DictReader(f)]
        assert table == [(r["epoch"], r["train_loss"]) for r in read_history(folder) if r.get("kind") == "epoch"]
    summary = read_json(run / "summary.json")
    assert summary["stop_reason"] == "completed"
    restart = summary["restarts"][0]
    assert restart["before"]["optim.lr"] == 15 and restart["after"]["optim.lr"] == 1.5  # lr_diverged: LR / 10
    assert "started again" in result.out and "attempts" in result.out
    assert "started again (doctor.mode=fix)" in result.out  # in the summary table too
    history = read_history(run)
    assert history[0]["event"] == "remedy" and history[0]["what"] == "restart"  # said first in the new history
    lrs = [r["lr"] for r in history if r.get("kind") == "batch"]
    assert max(lrs) <= 1.5  # the new attempt trained at the corrected learning rate
    assert user.run("train", "--resume", "run", "train.epochs=3").code == 0  # a restarted run resumes as usual
    assert read_json(run / "summary.json")["epochs"] == 3


def test_fix_mode_starts_a_zero_initialized_run_again_with_the_seeds_init(user):
    result = user.run("train", *SMALL, "model.init=zeros", "doctor.mode=fix", "--run-dir", "run")
    assert result.code == 0, result
    run = user.cwd / "run"
    restart = read_json(run / "summary.json")["restarts"][0]
    assert restart["ids"][0] == "symmetric_init" and restart["after"] == {"model.init": "auto"}
    assert "init: auto" in (run / "config.yaml").read_text()
    assert "init: zeros" in (run / "attempts" / "1" / "config.yaml").read_text()
    assert user.run("doctor", "run").code == 0 and "symmetric_init" not in user.run("doctor", "run").out


def test_off_mode_writes_no_finding_events_and_prints_no_verdict(user):
    result = user.run("train", *SMALL, "preprocess.normalize=none", "doctor.mode=off", "--run-dir", "run")
    assert result.code == 0 and not events(user.cwd / "run", "finding") and "doctor:" not in result.out
