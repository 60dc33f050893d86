"""cnntricks tune: trials are runs, the value is validation accuracy, pruning stops a run through its
plug-in, a killed search continues with the interrupted trial's parameters, several workers share a
journal file, and the best trials become an ensemble."""
import json

import optuna
import pytest

from cnntricks.config import ConfigError, load
from cnntricks.rundir import RunDirectoryError, read_json
from cnntricks.train.plugins import Stop
from cnntricks.tune import TrialReporter, top_runs, tune
from cnntricks.tune.study import load_study

TINY = ["data.source=digits", "model.depth=1", "train.epochs=2", "optim.batch_size=64", "doctor.mode=off",
        "train.monitor=off", "train.threads=1"]
SPACE = "optim.lr: {type: log, low: 0.03, high: 0.3}\nmodel.width: {type: int, low: 4, high: 8, step: 4}\n"
QUIET = dict(say=lambda message: None)


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


class FakeTrial:
    def __init__(self, prune):
        self.reports, self.prune = [], prune

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return self.prune


class FakeTrainer:
    class state:
        epoch = 3
        last_epoch = {"val_acc": 0.75}


def test_the_reporter_reports_each_epoch_and_stops_a_pruned_run():
    going, pruned = FakeTrial(False), FakeTrial(True)
    assert TrialReporter(going).on_epoch_end(FakeTrainer) is None and going.reports == [(0.75, 3)]
    assert TrialReporter(pruned).on_epoch_end(FakeTrainer) == Stop("pruned")
    later = FakeTrial(False)
    TrialReporter(later, offset=5).on_epoch_end(FakeTrainer)  # a cross-validated trial's second fold
    assert later.reports == [(0.75, 8)]


def test_trials_are_runs_and_a_killed_search_continues(tmp_path, space):
    out = tmp_path / "search"
    result = tune(None, TINY, space, out, 2, pruner="none", **QUIET)
    assert result["counts"]["complete"] == 2 and result["storage"].startswith("sqlite:///")
    for row in result["ranking"]:
        summary = read_json(f"{row['run_dir']}/summary.json")
        assert row["value"] == summary["best_val_acc"] and row["test_acc"] == summary["test_acc"]
        cfg = load(f"{row['run_dir']}/config.yaml")
        assert cfg.optim.lr == row["params"]["optim.lr"] and cfg.model.width == row["params"]["model.width"]
    assert result["ranking"][0]["value"] >= result["ranking"][1]["value"]
    # a kill during trial 2: asked, parameters drawn, never told
    study = load_study(read_json(out / "tune.json"))
    killed = study.ask()
    lr, width = killed.suggest_float("optim.lr", 0.03, 0.3, log=True), killed.suggest_int("model.width", 4, 8, step=4)
    from cnntricks.tune import study as study_module
    study_module.STALE_SECONDS = 0
    said = []
    again = tune(None, TINY, space, out, 3, pruner="none", say=said.append)
    assert said[0] == "tune: 1 trial interrupted by a kill: tried again with the same parameters"
    retried = [row for row in again["ranking"] if row["number"] == 3]
    assert retried and retried[0]["params"] == {"optim.lr": lr, "model.width": width}
    assert again["counts"] == {"complete": 3, "pruned": 0, "fail": 1, "running": 0}
    with pytest.raises(RunDirectoryError, match="another space"):
        tune(None, [*TINY, "optim.momentum=0.5"], space, out, 3, **QUIET)
    assert [p.name for p in top_runs(out, 2)] == [f"trial-{row['number']:04d}" for row in again["ranking"][:2]]
    with pytest.raises(ConfigError, match="has 3 finished trials"):
        top_runs(out, 4)


@pytest.mark.slow  # benchmarks/tune_workers.py --smoke runs two workers on a journal file in the default set
def test_two_workers_share_a_journal_file(tmp_path, space):
    said = []
    result = tune(None, TINY, space, tmp_path / "two", 3, workers=2, pruner="none", say=said.append)
    assert result["storage"].startswith("journal:") and "journal file storage" in said[0]
    assert result["counts"]["complete"] >= 3 and result["counts"]["fail"] == 0  # a racing worker may add one
    numbers = sorted(row["number"] for row in result["ranking"])
    assert numbers == list(range(len(numbers)))
    with pytest.raises(ConfigError, match="SQLite, which locks up"):
        tune(None, TINY, space, tmp_path / "one", 1, pruner="none", **QUIET)
        tune(None, TINY, space, tmp_path / "one", 2, workers=2, **QUIET)


def test_the_cli_tunes_and_ensembles_the_best(user, space):
    made = user.run("tune", "--space", str(space), "--trials", "2", "--out", "search", "--pruner", "none", *TINY)
    assert made.code == 0, made
    assert "2 complete, 0 pruned, 0 failed" in made.out
    ens = user.run("ensemble", "--study", "search", "--top", "2", "--out", "top", "--json")
    assert ens.code == 0, ens
    assert [m["name"] for m in json.loads(ens.out)["ensemble"]["members"]] == [
        r["run_dir"].rsplit("/", 1)[1] for r in read_json(user.cwd / "search" / "tune.json")["ranking"][:2]]
    bad = user.run("tune", "--space", str(space), "--trials", "0", "--out", "x")
    assert bad.code == 2 and "--trials must be >= 1" in bad.err
    one_fold = user.run("tune", "--space", str(space), "--trials", "2", "--folds", "1", "--out", "y")
    assert one_fold.code == 2 and "--folds must be 2 or more" in one_fold.err


def test_cross_validated_trials_are_valued_by_their_folds_mean_and_stack_out_of_fold(tmp_path, space):
    from cnntricks.ensemble import build_ensemble
    out = tmp_path / "cv"
    result = tune(None, TINY, space, out, 2, pruner="none", folds=2, **QUIET)
    assert result["folds"] == 2 and result["counts"]["complete"] == 2
    for row in result["ranking"]:
        summaries = [read_json(f"{run}/summary.json") for run in row["run_dirs"]]
        assert [load(f"{run}/config.yaml").data.fold for run in row["run_dirs"]] == [0, 1]
        assert row["value"] == pytest.approx(sum(s["best_val_acc"] for s in summaries) / 2)
        assert row["test_acc"] == pytest.approx(sum(s["test_acc"] for s in summaries) / 2)
    runs = top_runs(out, 2)
    assert [f"{p.parent.name}/{p.name}" for p in runs] == [
        f"trial-{row['number']:04d}/fold-{fold}" for row in result["ranking"] for fold in (0, 1)]
    summary = build_ensemble([(run, None) for run in runs], tmp_path / "stack", "stack", **QUIET)
    record = read_json(tmp_path / "stack" / "ensemble.json")
    assert record["fitted_on"] == "out-of-fold validation" and record["fit"]["groups"] == [0, 0, 1, 1]
    assert [m["name"] for m in summary["ensemble"]["members"]] == [f"{p.parent.name}-{p.name}" for p in runs]
    with pytest.raises(RunDirectoryError, match="started with --folds 2"):
        tune(None, TINY, space, out, 3, **QUIET)
    with pytest.raises(ConfigError, match="--folds must be 2 or more"):
        tune(None, TINY, space, tmp_path / "x", 1, folds=1, **QUIET)
