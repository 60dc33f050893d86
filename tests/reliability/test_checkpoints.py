"""Damaged checkpoints: verified before any load, passed over for the next older intact one (with a
warning naming both), never unpickled; none intact is a data error (exit 3), not a traceback."""
from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
from reliability_helpers import no_traceback, snapshot
from PIL import Image

from cnntricks.rundir import checkpoint_problem, find_checkpoint, latest_checkpoint


class Payload:
    """A pickle that creates a file if anything ever unpickles it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def damage(path, how: str, marker) -> None:
    data = path.read_bytes() if path.exists() else b""
    middle = len(data) // 2
    path.write_bytes({
        "truncated": data[:middle],
        "zero-byte": b"",
        "pickle": pickle.dumps(Payload(marker)),
        "garbage": bytes(np.random.default_rng(0).integers(0, 256, max(len(data), 64), dtype=np.uint8)),
        "bit-flip": data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:],
        "json-list": b"[1, 2, 3]",
        "json-empty": b"{}",
        "deleted": None,
    }[how] or b"") if how != "deleted" else path.unlink()


TENSOR_DAMAGE = ["truncated", "zero-byte", "pickle", "garbage", "bit-flip", "deleted"]
STATE_DAMAGE = ["truncated", "zero-byte", "pickle", "garbage", "json-list", "json-empty", "deleted"]
CASES = [(f, how) for f in ("model.safetensors", "state.safetensors") for how in TENSOR_DAMAGE] + \
        [("state.json", how) for how in STATE_DAMAGE]


@pytest.mark.parametrize("file, how", CASES)
def test_a_damaged_newest_checkpoint_is_found_and_passed_over(run_copy, tmp_path, file, how):
    newest = run_copy / "checkpoints" / "epoch-0003"
    damage(newest / file, how, tmp_path / "unpickled")
    assert checkpoint_problem(newest) is not None
    assert latest_checkpoint(run_copy).name == "epoch-0002"
    with pytest.warns(UserWarning, match="epoch-0003 .* is damaged .* epoch-0002"):
        assert find_checkpoint(run_copy).name == "epoch-0002"
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("how", ["truncated", "pickle", "bit-flip"])
def test_evaluate_and_predict_use_the_older_intact_checkpoint_and_change_nothing(user, run_copy, tmp_path, how):
    damage(run_copy / "checkpoints" / "epoch-0003" / "model.safetensors", how, tmp_path / "unpickled")
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(tmp_path / "a.png")
    before = snapshot(run_copy)
    for command in (["evaluate", run_copy], ["predict", run_copy, tmp_path / "a.png"]):
        result = user.run(*command)
        assert result.code == 0, result
        assert "epoch-0003" in result.err and "damaged" in result.err and "epoch-0002" in result.err, result
        no_traceback(result)
    assert snapshot(run_copy) == before
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("file, how", [("model.safetensors", "zero-byte"), ("state.json", "garbage"), *[
    pytest.param(*case, marks=pytest.mark.slow) for case in [("state.safetensors", "truncated"),
                                                             ("state.safetensors", "pickle")]]])
def test_resume_continues_from_the_older_intact_checkpoint(user, run_copy, tmp_path, file, how):
    damage(run_copy / "checkpoints" / "epoch-0003" / file, how, tmp_path / "unpickled")
    result = user.run("train", "--resume", run_copy, "train.epochs=4", "--quiet")
    assert result.code == 0, result
    assert "resuming from the older intact epoch-0002" in result.err, result
    no_traceback(result)
    epochs = [json.loads(line)["epoch"] for line in (run_copy / "history.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert epochs == [1, 2, 3, 4]  # epoch 3 trained again from epoch-0002, nothing twice
    assert json.loads((run_copy / "summary.json").read_text())["epochs"] == 4
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("command", ["resume", "evaluate", "predict"])
def test_no_intact_checkpoint_is_a_data_error(user, run_copy, tmp_path, command):
    for folder in (run_copy / "checkpoints").glob("epoch-*"):
        damage(folder / "model.safetensors", "truncated", tmp_path / "unpickled")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    before = snapshot(run_copy)
    args = {"resume": ["train", "--resume", run_copy, "--quiet"], "evaluate": ["evaluate", run_copy],
            "predict": ["predict", run_copy, tmp_path / "a.png"]}[command]
    result = user.run(*args)
    assert result.code == 3, result
    assert "no intact checkpoint" in result.err and "epoch-0003" in result.err and "epoch-0002" in result.err
    no_traceback(result)
    assert snapshot(run_copy) == before


def test_latest_naming_a_folder_outside_the_run_is_ignored(user, run_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    damage(other / "checkpoints" / "epoch-0003" / "model.safetensors", "bit-flip", None)  # different weights
    (run_copy / "checkpoints" / "latest").write_text(f"../../{other.name}/checkpoints/epoch-0003\n")
    os.symlink(other / "checkpoints" / "epoch-0003", run_copy / "checkpoints" / "epoch-0009")
    assert latest_checkpoint(run_copy) == run_copy / "checkpoints" / "epoch-0003"
    for text in ("/etc", "epoch-0003/../../..", "", "\x00\xff"):
        (run_copy / "checkpoints" / "latest").write_text(text, errors="surrogateescape")
        assert latest_checkpoint(run_copy) == run_copy / "checkpoints" / "epoch-0003"


def test_checkpoints_record_the_size_and_checksum_of_their_files(run_copy):
    state = json.loads((run_copy / "checkpoints" / "epoch-0003" / "state.json").read_text())
    files = state["files"]
    assert set(files) == {"model.safetensors", "state.safetensors"}
    for name, entry in files.items():
        assert entry["bytes"] == (run_copy / "checkpoints" / "epoch-0003" / name).stat().st_size
        assert len(entry["sha256"]) == 64
