"""SIGTERM (schedulers, container stops, spot preemption) and Ctrl-C: a checkpoint inside the epoch
at the next step boundary, the documented exit code and one line naming it; the resumed run ends
bit for bit equal to its uninterrupted twin."""
from __future__ import annotations

import io
import random
import signal
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from reliability_helpers import no_traceback
from e2e_helpers import assert_runs_equal, run_main, user_environment

from cnntricks.rundir import checkpoint_folders

EPOCHS = 4
TWIN = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=16",
        f"train.epochs={EPOCHS}", "model.dropout=0.2", "train.monitor=every:3", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twin")
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        for name, value in user_environment(root).items():
            if name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
                patch.setenv(name, value)
        assert run_main("train", *TWIN, "--run-dir", root / "run", "--quiet") == 0, err.getvalue()
    return root / "run"


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
    # 0: it finished first; -15: killed while Python itself started, before cnntricks could act
    # (nothing was written yet); 143 with the message otherwise
    assert result.code in ((0, 143, -signal.SIGTERM) if delay < 0.1 else (0, 143)), result
    no_traceback(result)
