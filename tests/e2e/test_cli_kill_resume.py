"""Kill a training run at any moment, resume it, and get the numbers of a run never interrupted.

README, "Checkpoints and resuming": a run killed at any moment (even with SIGKILL) keeps its newest
complete checkpoint; `--resume` restores model, optimizer, schedule and all RNG states, so the
resumed run ends with the same numbers as an uninterrupted one, bitwise on this CPU. Checked here
against one uninterrupted run of the same config and seed: summary.json, every tensor of the final
model.safetensors (torch.equal) and history.jsonl line by line (timing fields aside).
"""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import assert_runs_equal, train_in_background_folder
from safetensors.torch import load_file

from cnntricks.rundir import latest_checkpoint

# Many short epochs (28 steps each), so kills fall inside epochs and inside checkpoint writes;
# dropout and the standard augmentation make the global and the loader RNG matter; the monitor
# samples often, so its dead-unit window must survive the resume too.
EPOCHS = 6
KILL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=16",
        f"train.epochs={EPOCHS}", "model.dropout=0.2", "train.monitor=every:3"]
KILL_AT = Path(__file__).with_name("kill_at.py")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every killed-and-resumed run must equal."""
    return train_in_background_folder(tmp_path_factory.mktemp("uninterrupted"), *KILL, "--quiet")


def assert_survived_kill(run: Path) -> int:
    """What a kill must leave: the checkpoint a resume would start from is complete and loadable,
    and history.jsonl holds every line it vouches for. Returns its epoch (0: no checkpoint yet)."""
    assert (run / "config.yaml").is_file()
    folder = latest_checkpoint(run)
    if folder is None:
        return 0
    load_file(folder / "model.safetensors")
    load_file(folder / "state.safetensors")
    state = json.loads((folder / "state.json").read_text())
    lines = (run / "history.jsonl").read_text().split("\n")
    assert len(lines) > state["history_lines"], "history.jsonl lost lines its checkpoint vouches for"
    for line in lines[:state["history_lines"]]:
        json.loads(line)
    return state["epoch"]


def kill_during_epoch(user, args: list[str], epoch: int, delay: float, sig=signal.SIGKILL):
    """Start `cnntricks train ARGS`, send `sig` `delay` seconds after epoch `epoch`'s progress bar appears."""
    process = user.start("train", *args)
    started = process.wait_for(f"epoch {epoch}/{EPOCHS}")
    if started:
        time.sleep(delay)
        process.kill(sig)
    return process.finish()


def resume_in_process(user, run: Path) -> None:
    result = user.run("train", "--resume", run, "--quiet")
    assert result.code == 0, result


def test_sigkill_mid_training_then_resume_equals_the_uninterrupted_run(user, reference):
    rng = random.Random(20240611)
    epoch, delay = rng.randint(2, EPOCHS - 1), rng.uniform(0, 0.08)
    run = user.cwd / "run"
    killed = kill_during_epoch(user, [*KILL, "--run-dir", run], epoch, delay)
    assert killed.code == -signal.SIGKILL, f"the kill came too late: {killed}"
    assert 0 < assert_survived_kill(run) < EPOCHS
    assert not (run / "summary.json").exists()

    resumed = user.spawn("train", "--resume", run, "--quiet")
    assert resumed.code == 0, resumed
    assert_runs_equal(run, reference)


def test_ctrl_c_exits_130_and_resume_finishes_the_same_run(user, reference):
    run = user.cwd / "run"
    interrupted = kill_during_epoch(user, [*KILL, "--run-dir", run], 3, 0.02, sig=signal.SIGINT)
    assert interrupted.code == 130, interrupted
    assert f"--resume {run}" in interrupted.err and "Traceback" not in interrupted.err  # the run, by its path
    assert_survived_kill(run)
    resume_in_process(user, run)
    assert_runs_equal(run, reference)


# (point, the n-th time it is reached, the epoch of the checkpoint left to resume from): see
# kill_at.py. history-flushed 1 is a kill in the first epoch with its history on disk but no
# checkpoint yet; checkpoint-renamed 2 leaves a complete epoch-0002 that `latest` does not name yet
# (at 1 there is no `latest` at all, and the newest complete folder is used).
POINTS = [("checkpoint-renamed", 2, 1)] + [
    pytest.param(*point, marks=pytest.mark.slow) for point in [
        ("history-flushed", 1, 0), ("history-half", 3, 2), ("model-written", 1, 0), ("model-written", 4, 3), ("checkpoint-renamed", 1, 1),
        ("latest-half", 2, 1), ("latest-written", 1, 1), ("old-half-deleted", 1, 3),
        ("history-flushed", EPOCHS, EPOCHS - 1)]]


@pytest.mark.parametrize("point, n, resumes_from", POINTS)
def test_sigkill_inside_a_checkpoint_write_then_resume(user, reference, point, n, resumes_from):
    run = user.cwd / "run"
    killed = subprocess.run([sys.executable, str(KILL_AT), point, str(n), "train", *KILL, "--run-dir", str(run),
                             "--quiet"], cwd=user.cwd, env=user.env, capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, f"{point} {n} was never reached:\n{killed.stderr[-3000:]}"
    assert assert_survived_kill(run) == resumes_from
    assert not (run / "summary.json").exists()

    if resumes_from == 0:
        # No checkpoint yet: running the same command again must also give the uninterrupted run.
        again = run.with_name("again")
        shutil.copytree(run, again)
        result = user.run("train", *KILL, "--run-dir", again, "--quiet")
        assert result.code == 0, result
        assert_runs_equal(again, reference)
    resume_in_process(user, run)
    assert_runs_equal(run, reference)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left in checkpoints/: {leftovers}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sigkills_and_resumes_equal_the_uninterrupted_run(user, reference, seed):
    """First a kill in the first epoch (no checkpoint yet), then kills of resumed runs at random
    moments, one of them just after an epoch's line is printed (its checkpoint being written)."""
    rng = random.Random(seed)
    run = user.cwd / "run"
    killed = kill_during_epoch(user, [*KILL, "--run-dir", run], 1, rng.uniform(0, 0.02))
    assert killed.code == -signal.SIGKILL, killed
    assert assert_survived_kill(run) == 0, "the first kill should land before the first checkpoint"

    kills = 1
    for attempt in range(4):
        done = assert_survived_kill(run)
        if done >= EPOCHS - 1:
            break
        process = user.start("train", "--resume", run)
        epoch = rng.randint(done + 1, EPOCHS - 1)
        if attempt == 1:  # right after the epoch line: inside its history flush or checkpoint write
            reached = process.wait_for(f"epoch {epoch:>3}/{EPOCHS}  train loss", stream="out")
        else:
            reached = process.wait_for(f"epoch {epoch}/{EPOCHS}") and not time.sleep(rng.uniform(0, 0.08))
        if reached:
            process.kill()
        result = process.finish()
        assert result.code in (0, -signal.SIGKILL), result
        kills += result.code == -signal.SIGKILL
    assert kills >= 3
    resume_in_process(user, run)
    assert_runs_equal(run, reference)


@pytest.mark.parametrize("point", [pytest.param("attempt-copied", marks=pytest.mark.slow), "attempt-archived"])
def test_sigkill_while_fix_mode_starts_a_run_again_then_resume(user, point):
    """A kill inside a restart loses nothing: the resume continues the old attempt (copied) or starts
    the old config again and meets the same fault (archived); either way it ends with the fix."""
    run = user.cwd / "run"
    args = [*KILL[:5], "train.epochs=2", "model.init=zeros", "doctor.mode=fix", "--run-dir", str(run)]
    killed = subprocess.run([sys.executable, str(KILL_AT), point, "1", "train", *args],
                            env=user.env, cwd=user.cwd, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "attempts" / "1" / "restart.json").is_file() and not list((run / "attempts").glob(".*"))
    resumed = user.spawn("train", "--resume", run, "--quiet")
    assert resumed.code == 0, resumed
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["restarts"]
    assert "init: auto" in (run / "config.yaml").read_text()
    assert all((folder / "history.jsonl").is_file() for folder in (run / "attempts").iterdir())
