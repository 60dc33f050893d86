"""`cnntricks ensemble`: members trained with --train --seeds, or runs named; then evaluate, predict and
the report read the ensemble like a run."""
from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_helpers import read_json
from PIL import Image

TINY = ["data.source=digits", "model.width=4", "model.depth=1", "train.epochs=1", "optim.batch_size=64",
        "doctor.mode=off", "train.monitor=off", "train.threads=1"]


def test_train_seeds_then_evaluate_predict_and_report(user):
    made = user.run("ensemble", "--train", "--seeds", "2", "--out", "ens", "--fusion", "weighted", *TINY)
    assert made.code == 0, made
    assert "ensemble (weighted)" in made.out and "gain over the best member" in made.out
    assert "training member 2 of 2 (train.seed=1)" in made.err
    ens = user.cwd / "ens"
    for seed in (0, 1):
        config = (ens / "members" / f"seed-{seed}" / "config.yaml").read_text()
        assert "split_seed: 0" in config and f"  seed: {seed}\n" in config  # one validation split, own init
    assert (ens / "report" / "index.html").is_file() and (ens / "report" / "members.png").is_file()
    summary = read_json(ens / "summary.json")

    evaluated = user.run("evaluate", "ens", "--json")
    assert evaluated.code == 0, evaluated
    result = json.loads(evaluated.out)
    assert result["acc"] == summary["test_acc"] and len(result["members"]) == 2 and "shot_acc" in result
    table = user.run("evaluate", "ens")
    assert "ensemble (weighted)" in table.out and "test accuracy" in table.out

    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(user.cwd / "x.png")
    predicted = user.run("predict", "ens", "x.png", "--json")
    assert predicted.code == 0, predicted
    top = json.loads(predicted.out)[0]["predictions"]
    assert len(top) == 3 and 0 < top[0]["probability"] <= 1

    doctor = user.run("doctor", "ens", "--json")
    assert doctor.code == 0, doctor
    assert list(json.loads(doctor.out)) == ["ensemble", "seed-0", "seed-1"]

    again = user.run("ensemble", "--train", "--seeds", "2", "--out", "ens", *TINY)
    assert again.code != 0 and "already an ensemble" in again.err


@pytest.mark.slow  # named checkpoints: tests/ensemble/test_directory.py in the default set
def test_named_runs_with_a_checkpoint_and_overrides_refused(user):
    for seed in (0, 1):
        assert user.run("train", *TINY, f"train.seed={seed}", "data.split_seed=0", "--run-dir", f"r{seed}",
                        "--quiet").code == 0
    made = user.run("ensemble", "r0@epoch-0001", "r1", "--fusion", "vote", "--out", "v", "--json")
    assert made.code == 0, made
    summary = json.loads(made.out)
    assert summary["fusion"] == "vote" and summary["ensemble"]["members"][0]["name"] == "r0@epoch-0001"
    wrong = user.run("ensemble", "r0", "r1", "--out", "w", "optim.lr=0.1")
    assert wrong.code == 2 and "for --train" in wrong.err and not (user.cwd / "w").exists()
    one = user.run("ensemble", "r0", "--out", "w")
    assert one.code == 2 and "2 or more members" in one.err


def test_a_killed_train_keeps_its_finished_members(user):
    """The members finished before a kill are kept: a second --train trains only the rest."""
    from cnntricks.ensemble.train import member_configs, train_members
    configs = member_configs(None, TINY, 2)
    train_members(configs[:1], user.cwd / "ens", say=lambda m: None)  # as if killed after member 1
    said = []
    train_members(configs, user.cwd / "ens", say=said.append)
    assert said[0] == f"ensemble: 1 of 2 members already trained in {user.cwd / 'ens' / 'members'}"
    assert [m for m in said if "training member" in m] == [
        f"ensemble: training member 1 of 1 (train.seed=1) in {user.cwd / 'ens' / 'members' / 'seed-1'}"]
    made = user.run("ensemble", "--train", "--seeds", "2", "--out", "ens", *TINY)
    assert made.code == 0 and "2 of 2 members already trained" in made.err


@pytest.mark.slow
def test_members_train_in_parallel_processes(user):
    made = user.run("ensemble", "--train", "--seeds", "2", "--workers", "2", "--out", "ens", *TINY)
    assert made.code == 0, made
    assert "training 2 members in 2 processes" in made.err
    for seed in (0, 1):
        assert (user.cwd / "ens" / "members" / f"seed-{seed}" / "summary.json").is_file()


def test_a_snapshot_run_keeps_one_model_per_cycle_and_they_make_an_ensemble(user):
    trained = user.run("train", *TINY, "train.epochs=4", "schedule.name=snapshot", "schedule.cycles=2",
                       "schedule.warmup_epochs=0", "--run-dir", "snap", "--quiet")
    assert trained.code == 0, trained
    snapshots = user.cwd / "snap" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == ["cycle-01", "cycle-02"]
    assert [read_json(snapshots / c / "state.json")["epoch"] for c in ("cycle-01", "cycle-02")] == [2, 4]
    events = [json.loads(line) for line in (user.cwd / "snap" / "history.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e.get("event") == "snapshot"] == [2, 4]
    made = user.run("ensemble", "--snapshots", "snap", "--out", "ens", "--copy", "--json")
    assert made.code == 0, made
    summary = json.loads(made.out)
    assert [m["name"] for m in summary["ensemble"]["members"]] == ["snap@cycle-01", "snap@cycle-02"]
    # the last snapshot is the run's own final model
    last = summary["ensemble"]["members"][1]["acc"]
    assert last == read_json(user.cwd / "snap" / "summary.json")["test_acc"]
    record = read_json(user.cwd / "ens" / "ensemble.json")
    assert [m["checkpoint"] for m in record["members"]] == ["snapshots/cycle-01", "snapshots/cycle-02"]
    assert (user.cwd / "ens" / "members" / "snap@cycle-01" / "snapshots" / "cycle-01" / "model.safetensors").is_file()

    plain = user.run("train", *TINY, "--run-dir", "plain", "--quiet")
    assert plain.code == 0
    none = user.run("ensemble", "--snapshots", "plain", "--out", "e2")
    assert none.code == 2 and "has 0 snapshots" in none.err and "schedule.name=snapshot" in none.err


@pytest.mark.slow  # the folds themselves: tests/data/test_stratified_split.py in the default set
def test_cross_validation_members_hold_out_one_fold_each(user):
    made = user.run("ensemble", "--train", "--seeds", "3", "--folds", "--out", "cv", *TINY)
    assert made.code == 0, made
    for fold in range(3):
        config = (user.cwd / "cv" / "members" / f"fold-{fold}" / "config.yaml").read_text()
        assert "folds: 3" in config and f"  fold: {fold}\n" in config
    sizes = [read_json(user.cwd / "cv" / "members" / f"fold-{fold}" / "summary.json")["split_sizes"]
             for fold in range(3)]
    assert len({s["train"] + s["val"] for s in sizes}) == 1  # the same images, dealt differently
    refused = user.run("ensemble", "--train", "--seeds", "3", "--folds", "--fusion", "features", "--out", "cv2", *TINY)
    assert refused.code == 2 and "--fusion stack or weighted" in refused.err and not (user.cwd / "cv2").exists()
    members = [str(user.cwd / "cv" / "members" / f"fold-{fold}") for fold in range(3)]
    stacked = user.run("ensemble", *members, "--fusion", "stack", "--out", "cvs", "--json")
    assert stacked.code == 0, stacked
    assert read_json(user.cwd / "cvs" / "ensemble.json")["fitted_on"] == "out-of-fold validation"
    wrong = user.run("train", *TINY, "data.folds=3", "data.fold=3", "--run-dir", "w")
    assert wrong.code == 2 and "data.fold=3 is not one of the data.folds=3 folds" in wrong.err


def test_every_epochs_checkpoint_kept_makes_an_ensemble(user):
    assert user.run("train", *TINY, "train.epochs=3", "train.keep_checkpoints=0", "--run-dir", "all",
                    "--quiet").code == 0
    assert sorted(p.name for p in (user.cwd / "all" / "checkpoints").glob("epoch-*")) == [
        "epoch-0001", "epoch-0002", "epoch-0003"]
    made = user.run("ensemble", "--checkpoints", "all", "--last", "2", "--out", "ens", "--json")
    assert made.code == 0, made
    assert [m["name"] for m in json.loads(made.out)["ensemble"]["members"]] == ["all@epoch-0002", "all@epoch-0003"]
    assert user.run("train", *TINY, "train.epochs=3", "--run-dir", "two", "--quiet").code == 0
    assert sorted(p.name for p in (user.cwd / "two" / "checkpoints").glob("epoch-*")) == ["epoch-0002", "epoch-0003"]
    one = user.run("ensemble", "--checkpoints", "two", "--last", "1", "--out", "e1")
    assert one.code == 2 and "--last must be 2 or more" in one.err
    bad = user.run("train", *TINY, "train.keep_checkpoints=1", "--run-dir", "bad")
    assert bad.code == 2 and "train.keep_checkpoints" in bad.err
