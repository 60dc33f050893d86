"""The loop's plug-in protocol: the events in order, actions carried out by the loop, plug-in state
in checkpoints, and the bare `fit` against `session.train` (which adds the config's plug-ins)."""
from __future__ import annotations

import json

from cnntricks import config
from cnntricks.doctor.act import TrainingDoctor
from cnntricks.monitor import MonitorPlugin
from cnntricks.rundir import latest_checkpoint
from cnntricks.session import standard_plugins, train
from cnntricks.train.loop import fit
from cnntricks.train.plugins import EVENTS, Stop

SMALL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=32",
         "train.epochs=2"]


class Recorder:
    """Writes down every event it is called on (and keeps a counter in the checkpoints)."""

    def __init__(self):
        self.calls: list[str] = []
        self.restored: list[dict] = []
        self.counter = 0
        for event in EVENTS:
            if not hasattr(self, event):
                setattr(self, event, lambda trainer, *args, _event=event: self.calls.append(_event))

    def on_restore(self, trainer, saved):
        self.calls.append("on_restore")
        self.restored.append(saved.get("recorder", {}))

    def on_step_end(self, trainer):
        self.calls.append("on_step_end")
        self.counter += 1

    def on_checkpoint(self, trainer):
        self.calls.append("on_checkpoint")
        return {"recorder": {"counter": self.counter}}


def collapse(calls: list[str]) -> list[str]:
    """Runs of one event as one entry: the order, not the step count."""
    return [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]


def test_events_come_in_the_documented_order(tmp_path):
    recorder = Recorder()
    fit(config.load(None, SMALL), tmp_path / "run", progress=False, callbacks=[recorder])
    order = collapse([c for c in recorder.calls if c not in ("on_step_start", "on_after_backward", "on_losses_read")])
    epoch = ["on_epoch_start", "on_step_end", "on_epoch_end", "on_checkpoint"]
    assert order == ["on_restore", "on_fit_start", *epoch, *epoch, "on_fit_end"]
    steps = recorder.calls.count("on_step_end")
    assert recorder.calls.count("on_step_start") == recorder.calls.count("on_after_backward") == steps
    assert recorder.calls.count("on_losses_read") == steps  # a CPU reads every step's loss back
    start = recorder.calls.index("on_step_start")
    assert recorder.calls[start:start + 4] == ["on_step_start", "on_after_backward", "on_step_end", "on_losses_read"]


def test_a_plugin_state_goes_into_the_checkpoint_and_comes_back_on_resume(tmp_path):
    first = Recorder()
    fit(config.load(None, SMALL), tmp_path / "run", progress=False, callbacks=[first])
    state = json.loads((latest_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["recorder"] == {"counter": first.counter} and first.restored == [{}]  # fresh: {}
    resumed = Recorder()
    fit(config.load(tmp_path / "run" / "config.yaml", ["train.epochs=3"]), tmp_path / "run", resume=True,
        progress=False, callbacks=[resumed])
    assert resumed.restored == [{"counter": first.counter}]


class StopAfterFirstEpoch:
    def on_epoch_end(self, trainer):
        return Stop("mine")


def test_a_stop_action_ends_the_run_with_its_reason_and_a_checkpoint(tmp_path):
    summary = fit(config.load(None, SMALL + ["train.epochs=5"]), tmp_path / "run", progress=False,
                  callbacks=[StopAfterFirstEpoch()])
    assert summary["stop_reason"] == "mine" and summary["epochs"] == 1
    assert latest_checkpoint(tmp_path / "run").name == "epoch-0001"


def test_the_bare_loop_attaches_no_monitor_and_the_session_attaches_what_the_config_names(tmp_path):
    cfg = config.load(None, SMALL + ["train.epochs=1", "train.monitor=every:2"])
    fit(cfg, tmp_path / "bare", progress=False)
    assert not (tmp_path / "bare" / "stats.jsonl").exists()
    train(cfg, tmp_path / "session", progress=False, report=False)
    assert (tmp_path / "session" / "stats.jsonl").read_text().count("\n") >= 2
    kinds = [type(p) for p in standard_plugins(cfg)]
    assert kinds == [MonitorPlugin, TrainingDoctor]
    assert standard_plugins(config.load(None, ["train.monitor=off", "doctor.mode=off"])) == []
    chosen = fit(cfg, tmp_path / "chosen", progress=False, callbacks=[MonitorPlugin(every=1)])
    assert (tmp_path / "chosen" / "stats.jsonl").read_text().count("\n") == chosen["steps"]  # exactly every step


def test_a_run_from_python_leaves_the_run_directory_the_command_line_leaves(tmp_path, capsys):
    """session.train draws report/ and gives the verdict, as `cnntricks train` does; with progress (or
    show) it prints the summary table."""
    cfg = config.load(None, [*SMALL, "train.monitor=off"])
    summary = train(cfg, tmp_path / "python", progress=False, show=True)
    assert (tmp_path / "python" / "report" / "index.html").is_file()
    out = capsys.readouterr().out
    assert "test accuracy" in out and f"{100 * summary['test_acc']:.2f}%" in out and "report:" in out
    train(cfg, tmp_path / "quiet", progress=False, report=False)
    assert not (tmp_path / "quiet" / "report").exists() and capsys.readouterr().out == ""
