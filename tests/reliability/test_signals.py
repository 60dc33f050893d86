"""SIGTERM (schedulers, container stops, spot preemption) and Ctrl-C: a checkpoint inside the epoch
at the next step boundary, the documented exit code and one line naming it; the resumed run ends
bit for bit equal to its uninterrupted twin."""
from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from reliability_helpers import no_traceback
from e2e_helpers import assert_runs_equal, train_in_background_folder

from cnntricks.rundir import checkpoint_folders

EPOCHS = 4
TWIN = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=16",
        f"train.epochs={EPOCHS}", "model.dropout=0.2", "train.monitor=every:3", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    return train_in_background_folder(tmp_path_factory.mktemp("twin"), *TWIN, "--quiet")


@pytest.mark.parametrize("sig, code, epoch", [(signal.SIGTERM, 143, 3), *[
    pytest.param(*case, marks=pytest.mark.slow) for case in [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 2)]]])
def test_a_signal_inside_an_epoch_checkpoints_there_and_the_resume_equals_the_twin(user, twin, sig, code, epoch):
    run = user.cwd / "run"
    process = user.start("train", *TWIN, "--run-dir", run)
    assert process.wait_for(f"epoch {epoch}/{EPOCHS}")
    time.sleep(random.Random(epoch).uniform(0.01, 0.05))
    process.kill(sig)
    result = process.finish()
    assert result.code == code, result
    name = signal.Signals(sig).name
    assert f"stopped by {name}" in result.err and "checkpoint" in result.err and "--resume" in result.err, result
    no_traceback(result)
    newest = checkpoint_folders(run)[0]
    assert "-step-" in newest.name and str(newest) in result.err  # inside the epoch, not at its start
    # epoch 1 and 3 end with no checkpoint (checkpoint_every=2): the step checkpoint saves that work
    resumed = user.run("train", "--resume", run, "--quiet")
    assert resumed.code == 0, resumed
    assert_runs_equal(run, twin)


def test_sigterm_while_loading_exits_143_with_a_message(user):
    process = user.start("train", "data.source=synthetic", "--run-dir", "run")
    assert process.wait_for("run directory:")
    process.kill(signal.SIGTERM)
    result = process.finish()
    assert result.code == 143, result
    assert "stopped by SIGTERM" in result.err
    no_traceback(result)


@pytest.mark.parametrize("delay", [0.4, 1.6, *[pytest.param(d, marks=pytest.mark.slow) for d in (0.05, 0.9)]])  # importing torch, loading the run, evaluating
def test_sigterm_outside_training_is_a_message_too(user, run_copy, delay):
    process = user.start("evaluate", run_copy)
    time.sleep(delay)
    process.kill(signal.SIGTERM)
    result = process.finish()
    # 143 with the message; 0 or -15 when the command had finished first (the default action comes
    # back while Python shuts down); -15 also while Python itself starts, before cnntricks can act
    finished = "test accuracy" in result.out
    assert result.code == 143 or (finished and result.code in (0, -signal.SIGTERM)) or \
        (delay < 0.1 and result.code == -signal.SIGTERM), result
    if result.code == 143:
        assert "stopped by SIGTERM" in result.err, result
    no_traceback(result)
