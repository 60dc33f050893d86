"""train.tensorboard=true: real event files in the run directory, read back with TensorBoard's own reader
(EventAccumulator): the batch and epoch scalars equal the history's, histograms of the weights and of the
monitor's activations, the hyper-parameters in the same run, the report's figures; a resumed run shows
one curve."""
from __future__ import annotations

import pytest

from cnntricks import config
from cnntricks.rundir import read_history, split_history
from cnntricks.session import train

pytest.importorskip("tensorboard", reason="tensorboard is a test dependency: pip install -e '.[test]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SMALL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=32",
         "train.epochs=2", "train.tensorboard=true", "train.monitor=every:4", "doctor.mode=off"]


def read_events(run):
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_the_event_files_hold_the_runs_curves_histograms_hyperparameters_and_figures(tmp_path):
    run = tmp_path / "run"
    summary = train(config.load(None, SMALL), run, progress=False)
    assert list(run.glob("events.out.tfevents.*"))  # in the run directory itself, not a folder beside it
    events = read_events(run)
    tags = events.Tags()
    batches, epochs = split_history(read_history(run))
    loss = {e.step: e.value for e in events.Scalars("batch/loss")}
    assert sorted(loss) == [b["step"] for b in batches]
    assert all(loss[b["step"]] == pytest.approx(b["loss"], rel=1e-6) for b in batches)
    val = events.Scalars("epoch/val_acc")
    assert [(e.step, round(e.value, 6)) for e in val] == [(r["epoch"], round(r["val_acc"], 6)) for r in epochs]
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert any(t.startswith("activations/") for t in tags["histograms"])  # the monitor's, from stats.jsonl
    assert events.Scalars("hparam/test_acc")[-1].value == pytest.approx(summary["test_acc"], rel=1e-6)
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    from tensorboard.plugins.hparams import plugin_data_pb2
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["optim.lr"].number_value == pytest.approx(0.1)
    assert "report/loss" in tags["images"]


def test_a_resumed_run_shows_one_curve(tmp_path):
    run = tmp_path / "run"
    train(config.load(None, SMALL), run, progress=False, report=False)
    train(config.load(run / "config.yaml", ["train.epochs=3"]), run, resume=True, progress=False, report=False)
    steps = [e.step for e in read_events(run).Scalars("batch/loss")]
    assert steps == sorted(set(steps))  # no step twice
    assert [e.step for e in read_events(run).Scalars("epoch/train_loss")] == [1, 2, 3]
