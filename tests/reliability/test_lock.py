"""One process at a time per run directory: a second `train` (new or --resume) stops at once with
exit 4 naming the holder's pid; the lock dies with its process, so a killed run never blocks."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from reliability_helpers import no_traceback, snapshot
from e2e_helpers import SMALL

from cnntricks.rundir import RunDirectoryError, hold_run_dir

LONG = [*SMALL[:-1], "train.epochs=200"]


def test_a_second_process_on_a_running_run_stops_at_once(user):
    run = user.cwd / "run"
    first = user.start("train", *LONG, "--run-dir", run)
    try:
        assert first.wait_for("epoch 2/200"), first.finish()
        pid = first.process.pid
        for args in (["train", *SMALL, "--run-dir", run, "--quiet"], ["train", "--resume", run, "--quiet"]):
            result = user.spawn(*args)
            assert result.code == 4, result
            assert "in use by another cnntricks process" in result.err and f"pid {pid}" in result.err, result
            no_traceback(result)
    finally:
        first.kill()
        first.finish()
    # the holder died by SIGKILL: its lock died with it
    result = user.run("train", "--resume", run, "train.epochs=3", "--quiet")
    assert result.code == 0, result
    history = (run / "history.jsonl").read_text().splitlines()
    assert len(history) == len(set(history))  # no epoch written twice


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    run = tmp_path / "run"
    with hold_run_dir(run), hold_run_dir(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    with hold_run_dir(run):  # released: taken again
        pass


def test_a_lock_held_elsewhere_names_its_pid(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom cnntricks.rundir import hold_run_dir\n"
                               f"with hold_run_dir({str(run)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryError, match=f"pid {holder.pid}"):
            with hold_run_dir(run):
                pass
    finally:
        holder.communicate("", timeout=30)
    with hold_run_dir(run):  # released when the holder ended
        pass


def test_a_failed_start_removes_only_the_folder_it_created(user, tmp_path):
    result = user.run("train", "data.source=npz", f"data.root={tmp_path / 'missing.npz'}", "--run-dir", "new", "--quiet")
    assert result.code == 3, result
    assert not (user.cwd / "new").exists()
    (user.cwd / "mine").mkdir()
    (user.cwd / "mine" / "notes.txt").write_text("keep me")
    before = snapshot(user.cwd / "mine")
    result = user.run("train", "data.source=npz", f"data.root={tmp_path / 'missing.npz'}", "--run-dir", "mine", "--quiet")
    assert result.code == 3 and snapshot(user.cwd / "mine") == before


def test_the_same_run_dir_twice_is_refused_before_the_lock_file_is_touched(user, run_copy):
    before = {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")}
    result = user.run("train", *SMALL, "--run-dir", run_copy, "--quiet")
    assert result.code == 4 and "already holds a run" in result.err, result
    assert {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")} == before
