"""A full disk: exit 6 with one line ("the disk is full"), the checkpoint before it intact, no
temporary file left, no partial history line; a report that cannot be written is not announced.

Needs a small tmpfs, which needs root (mount); skipped with the reason where it cannot be mounted.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from reliability_helpers import no_traceback, snapshot

from cnntricks.rundir import latest_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk, leave: int) -> None:
    """Fill the disk but `leave` bytes (in 4 KiB pages)."""
    free = shutil.disk_usage(disk).free
    with (disk / f"filler-{uuid.uuid4().hex}").open("wb") as f:
        f.write(b"\0" * max(0, free - leave))


def leftovers(run) -> list[str]:
    return [str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name]


def test_a_full_disk_during_training_keeps_the_last_checkpoint(user, run_copy, small_disk):
    run = small_disk / "run"
    shutil.copytree(run_copy, run)
    shutil.rmtree(run / "report")
    before = latest_checkpoint(run)
    vouched = json.loads((before / "state.json").read_text())["history_lines"]
    intact = snapshot(before)
    fill(small_disk, 8192)
    result = user.run("train", "--resume", run, "train.epochs=6", "--quiet")
    assert result.code == 6, result
    assert "disk is full" in result.err and "--resume" in result.err, result
    no_traceback(result)
    assert latest_checkpoint(run) == before and snapshot(before) == intact
    assert not leftovers(run), leftovers(run)
    lines = (run / "history.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) >= vouched and all(line.endswith(b"\n") for line in lines)
    for line in lines:
        json.loads(line)
    for filler in small_disk.glob("filler-*"):  # space again: the run continues
        filler.unlink()
    result = user.run("train", "--resume", run, "train.epochs=4", "--quiet")
    assert result.code == 0, result


def test_a_report_that_cannot_be_written_is_not_announced(user, run_copy, small_disk):
    run = small_disk / "run"
    shutil.copytree(run_copy, run)
    shutil.rmtree(run / "report")
    fill(small_disk, 0)
    result = user.run("doctor", run, "--report")
    assert result.code == 0, result
    assert "could not write the report" in result.err and "index.html" not in result.err + result.out, result
    no_traceback(result)
    assert not leftovers(run), leftovers(run)


def test_a_new_run_on_a_full_disk(user, small_disk):
    fill(small_disk, 0)
    result = user.run("train", "data.source=synthetic", "--run-dir", small_disk / "new", "--quiet")
    assert result.code == 6, result
    assert "disk is full" in result.err or "No space" in result.err, result
    no_traceback(result)
