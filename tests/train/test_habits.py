"""metrics.csv (one row per epoch, always, the history's epochs even after a resume) and early stopping
(train.patience on the validation accuracy, its stop reason in summary.json, counting on after a resume)."""
from __future__ import annotations

import csv

import pytest

from cnntricks import config
from cnntricks.config import ConfigError
from cnntricks.rundir import read_history, read_json, split_history
from cnntricks.train.habits import COLUMNS, METRICS_CSV, epochs_without_gain, metrics_csv_text
from cnntricks.train.loop import fit

SMALL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=32",
         "doctor.mode=off", "train.monitor=off"]


def read_csv(run):
    with (run / METRICS_CSV).open(newline="") as f:
        return list(csv.DictReader(f))


def test_epochs_without_gain_counts_from_the_best_and_ties_are_no_gain():
    assert epochs_without_gain([]) == 0
    assert epochs_without_gain([0.5, 0.6, 0.7]) == 0
    assert epochs_without_gain([0.5, 0.7, 0.6, 0.7]) == 2  # a tie with the best is not a gain
    assert epochs_without_gain([None, 0.5, None, 0.4]) == 1  # epochs without a validation figure are skipped


def test_metrics_csv_text_has_a_header_and_empty_cells_for_missing_values():
    text = metrics_csv_text([{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": None, "val_acc": None,
                              "lr": 0.1, "seconds": 2.0, "images_per_second": 100.0}])
    assert text.splitlines() == [",".join(COLUMNS), "1,0.5,0.8,,,0.1,2.0,100.0"]


def test_every_run_writes_metrics_csv_with_the_historys_epochs_also_after_a_resume(tmp_path):
    run = tmp_path / "run"
    fit(config.load(None, [*SMALL, "train.epochs=2"]), run, progress=False)
    rows = read_csv(run)
    epochs = split_history(read_history(run))[1]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, record in zip(rows, epochs):
        assert float(row["val_acc"]) == pytest.approx(record["val_acc"]) and float(row["lr"]) == pytest.approx(record["lr"])
    fit(config.load(None, [*SMALL, "train.epochs=3"]), run, resume=True, progress=False)
    assert [int(r["epoch"]) for r in read_csv(run)] == [1, 2, 3]  # the resumed run's table: no row twice


def test_patience_stops_the_run_when_validation_stops_improving(tmp_path, monkeypatch):
    from cnntricks.train import loop
    accuracies = iter([0.5, 0.6, 0.6, 0.55, 0.7, 0.8])
    real = loop.Trainer.evaluate

    def scripted(self, store, **kwargs):
        result = real(self, store, **kwargs)
        return {**result, "acc": next(accuracies)} if store is self.splits.val else result
    monkeypatch.setattr(loop.Trainer, "evaluate", scripted)
    summary = fit(config.load(None, [*SMALL, "train.epochs=6", "train.patience=2"]), tmp_path / "run", progress=False)
    assert summary["stop_reason"] == "patience" and summary["epochs"] == 4
    events = [r for r in read_history(tmp_path / "run") if r.get("event") == "early_stop"]
    assert len(events) == 1 and "not improved for 2 epochs" in events[0]["message"]


def test_patience_needs_a_validation_split(tmp_path):
    with pytest.raises(ConfigError, match="data.val_fraction=0"):
        fit(config.load(None, [*SMALL, "train.patience=2", "data.val_fraction=0"]), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="train.patience"):
        config.load(None, ["train.patience=0"])


def test_keep_best_scores_the_best_validation_epochs_weights_and_evaluate_reads_them(tmp_path, monkeypatch):
    from cnntricks.train import loop
    from cnntricks.train.inference import load_predictor
    accuracies = iter([0.5, 0.9, 0.6, 0.7])
    real = loop.Trainer.evaluate

    def scripted(self, store, **kwargs):
        result = real(self, store, **kwargs)
        return {**result, "acc": next(accuracies)} if store is self.splits.val else result
    monkeypatch.setattr(loop.Trainer, "evaluate", scripted)
    run = tmp_path / "run"
    summary = fit(config.load(None, [*SMALL, "train.epochs=4", "train.keep=best"]), run, progress=False)
    state = read_json(run / "best" / "state.json")
    assert state["epoch"] == 2 and state["val_acc"] == 0.9  # epoch 2 was best; later epochs did not replace it
    assert summary["test_weights"] == "best" and summary["best_epoch"] == 2
    loaded = load_predictor(run)  # the run's model is the best epoch's
    assert loaded.checkpoint.name == "best"
    assert load_predictor(run, checkpoint="last").checkpoint.name == "epoch-0004"
    import torch
    from safetensors.torch import load_file
    best = load_file(str(run / "best" / "model.safetensors"))
    assert all(torch.equal(best[k], v.cpu()) for k, v in loaded.predictor.model.state_dict().items() if k in best)


def test_keep_both_scores_the_last_and_keeps_the_best_beside_it(tmp_path):
    run = tmp_path / "run"
    summary = fit(config.load(None, [*SMALL, "train.epochs=2", "train.keep=both"]), run, progress=False)
    assert (run / "best" / "model.safetensors").is_file() and summary["test_weights"] == "last"
    from cnntricks.train.inference import load_predictor
    assert load_predictor(run).checkpoint.name == "epoch-0002"
    assert load_predictor(run, checkpoint="best").checkpoint.name == "best"
    with pytest.raises(ConfigError, match="train.keep"):
        fit(config.load(None, [*SMALL, "train.keep=best", "data.val_fraction=0"]), tmp_path / "x", progress=False)
