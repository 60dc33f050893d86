"""Hostile and careless input through the command line, case by case: the documented exit code, a
message naming the problem, no traceback, and nothing already written changed.

The data and configuration checks themselves are tested in tests/data/test_hostile_inputs.py and
tests/test_config.py; here each is seen as a user sees it, from the command line.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from reliability_helpers import no_traceback, snapshot
from PIL import Image

TINY = ["model.width=4", "model.depth=1", "train.epochs=1", "optim.batch_size=2", "train.threads=1", "--quiet"]


def npz(path, x, y, **more):
    np.savez(path, x=x, y=y, **more)
    return f"data.root={path}"


def images(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def folder(root, counts: dict[str, int]):
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i % 256, dtype=np.uint8)).save(root / name / f"{i}.png")
    return f"data.root={root}"


# ---- configuration: exit 2, nothing created -------------------------------------------------------

def yaml_file(tmp_path, name: str, content: bytes) -> str:
    (tmp_path / name).write_bytes(content)
    return str(tmp_path / name)


CONFIG_CASES = {
    "lr-inf": (["optim.lr=inf"], "optim.lr"),
    "lr-minus-inf": (["optim.lr=-inf"], "optim.lr"),
    "lr-nan": (["optim.lr=nan"], "optim.lr"),
    "momentum-1e999": (["optim.momentum=1e999"], "optim.momentum"),
    "image-size-huge": (["data.image_size=100000"], "data.image_size"),
    "epochs-negative": (["train.epochs=-3"], "train.epochs"),
    "batch-zero": (["optim.batch_size=0"], "optim.batch_size"),
    "empty-value": (["optim.lr="], "optim.lr"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_bad_value_is_a_configuration_error(user, case):
    overrides, words = CONFIG_CASES[case]
    result = user.run("train", "data.source=synthetic", *overrides, "--run-dir", "run", "--quiet")
    assert result.code == 2, result
    assert words in result.err and "configuration error" in result.err, result
    no_traceback(result)
    assert not (user.cwd / "run").exists()


YAML_CASES = {
    "latin-1": (b"optim:\n  lr: 0.1  # \xe9t\xe9\n", "UTF-8"),
    "duplicate-key": (b"optim:\n  lr: 0.1\n  lr: 0.5\n", "twice"),
    "duplicate-section": (b"optim:\n  lr: 0.1\noptim:\n  momentum: 0.5\n", "twice"),
    "top-level-list": (b"- optim\n- lr\n", "mapping"),
    "top-level-number": (b"3\n", "mapping"),
    "lr-inf": (b"optim:\n  lr: .inf\n", "optim.lr"),
    "broken": (b"optim: [lr\n", "YAML"),
    "binary": (bytes(range(256)), "UTF-8"),
    "unknown-tag": (b"optim: !!python/object:os.system ls\n", "YAML"),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_a_bad_config_file_is_a_configuration_error(user, tmp_path, case):
    content, words = YAML_CASES[case]
    result = user.run("train", yaml_file(tmp_path, "c.yaml", content), "--run-dir", "run", "--quiet")
    assert result.code == 2, result
    assert words in result.err and (case == "lr-inf" or "c.yaml" in result.err), result  # a value: its key
    no_traceback(result)
    assert not (user.cwd / "run").exists()


# ---- data: exit 3 (or a warning and a correct run), nothing created on an error -------------------

def data_case(tmp_path, case):
    """(overrides, expected code, words in the message) for each hostile data set."""
    x = images(24)
    if case == "label-999":
        return [npz(tmp_path / "d.npz", x, np.array([0, 1, 2, 999] * 6))], 0, "missing 3..998"
    if case == "label-2**62":
        return [npz(tmp_path / "d.npz", x, np.array([0, 1, 2**62] * 8, dtype=np.int64))], 0, "labels are not 0..K-1"
    if case == "label-negative":
        return [npz(tmp_path / "d.npz", x, np.array([0, -1] * 12))], 3, "negative"
    if case == "label-float":
        return [npz(tmp_path / "d.npz", x, np.array([0.0, 1.0] * 12))], 3, "integer"
    if case == "labels-count":
        return [npz(tmp_path / "d.npz", x, np.array([0, 1] * 10))], 3, "20 labels"
    if case == "test-class-unknown":
        return [npz(tmp_path / "d.npz", x, np.array([0, 1] * 12), x_test=images(4), y_test=np.array([0, 1, 2, 2]),
                    classes=np.array(["a", "b", "c"]))], 3, "lacks"
    if case == "one-class-npz":
        return [npz(tmp_path / "d.npz", x, np.zeros(24, dtype=np.int64))], 3, "2 classes"
    if case == "object-array":
        np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1] * 12), classes=np.array([{"a": 1}, "b"], dtype=object))
        return [f"data.root={tmp_path / 'd.npz'}"], 3, "never unpickled"
    if case == "not-npz":
        (tmp_path / "d.npz").write_bytes(pickle.dumps({"x": 1}))
        return [f"data.root={tmp_path / 'd.npz'}"], 3, "cannot read it as .npz"
    if case == "nan-images":
        return [npz(tmp_path / "d.npz", np.full((24, 8, 8), np.nan, dtype=np.float32), np.array([0, 1] * 12))], 3, "[0, 1]"
    if case == "empty-images":
        return [npz(tmp_path / "d.npz", np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64))], 3, "no images"
    if case == "one-class-folder":
        return ["data.source=image-folder", folder(tmp_path / "photos", {"cats": 6})], 3, "2 classes"
    if case == "one-image-per-class-folder":
        return ["data.source=image-folder", folder(tmp_path / "photos", {"cats": 1, "dogs": 1})], 3, "test image"
    if case == "symlink-to-root":
        arg = folder(tmp_path / "photos", {"cats": 4, "dogs": 4})
        os.symlink(tmp_path / "photos", tmp_path / "photos" / "loop")
        return ["data.source=image-folder", arg], 0, "loop"
    if case == "empty-folder":
        (tmp_path / "photos").mkdir()
        return ["data.source=image-folder", f"data.root={tmp_path / 'photos'}"], 3, "photos"
    if case == "fashion-root-typo":
        return ["data.source=fashion-mnist", f"data.root={tmp_path / 'fashon'}"], 3, "does not exist"
    if case == "npz-root-missing":
        return ["data.source=npz", f"data.root={tmp_path / 'nothing.npz'}"], 3, "not a file"
    raise AssertionError(case)


DATA_CASES = ["label-999", "label-2**62", "label-negative", "label-float", "labels-count", "test-class-unknown",
              "one-class-npz", "object-array", "not-npz", "nan-images", "empty-images", "one-class-folder",
              "one-image-per-class-folder", "symlink-to-root", "empty-folder", "fashion-root-typo", "npz-root-missing"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_hostile_data(user, tmp_path, case):
    overrides, code, words = data_case(tmp_path, case)
    source = [] if any(o.startswith("data.source") for o in overrides) else ["data.source=npz"]
    result = user.run("train", *source, *overrides, *TINY, "--run-dir", "run")
    assert result.code == code, result
    assert words in result.err, result
    no_traceback(result)
    run = user.cwd / "run"
    if code:
        assert not run.exists()
    else:
        summary = json.loads((run / "summary.json").read_text())
        assert len(summary["classes"]) < 10  # never a class per label value
    if case == "fashion-root-typo":
        assert not (tmp_path / "fashon").exists()  # never created, never downloaded into


def test_one_image_per_class_with_a_test_split_trains_reports_and_resumes(user, tmp_path):
    arg = npz(tmp_path / "d.npz", images(3), np.array([0, 1, 2]), x_test=images(3, seed=1), y_test=np.array([0, 1, 2]))
    result = user.run("train", "data.source=npz", arg, *TINY[:-1], "train.epochs=2", "--run-dir", "run")
    assert result.code == 0, result
    assert "validation split is empty" in result.err
    no_traceback(result)
    run = user.cwd / "run"
    assert (run / "report" / "index.html").is_file()
    result = user.run("train", "--resume", run, "train.epochs=3", "--quiet")
    assert result.code == 0, result
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


def test_an_empty_test_split_makes_no_misclassified_file_crash(user, tmp_path):
    arg = npz(tmp_path / "d.npz", images(8), np.array([0, 1] * 4), x_test=np.zeros((0, 8, 8), np.uint8),
              y_test=np.zeros(0, np.int64))
    result = user.run("train", "data.source=npz", arg, *TINY, "--run-dir", "run")
    assert result.code in (0, 3), result
    no_traceback(result)


# ---- damaged files of a finished run: each command says which file, changes nothing ------------

RUN_FILE_CASES = [
    ("config.yaml", b"optim: [", ["evaluate"], 2, "config.yaml"),
    ("config.yaml", b"- a list\n", ["train", "--resume"], 2, "config.yaml"),
    ("data.json", b"{not json", ["evaluate"], 3, "data.json"),
    ("data.json", b"{not json", ["predict"], 3, "data.json"),
    ("preprocess.json", b"\x00\x01", ["evaluate"], 3, "preprocess.json"),
    ("preprocess.json", b"[1, 2]", ["predict"], 3, "preprocess.json"),
    ("summary.json", b"{", ["doctor"], 0, None),
    ("stats.jsonl", b"garbage\n{also garbage\n", ["doctor"], 0, None),
    ("history.jsonl", b"", ["doctor", "--fail-on", "warning"], 5, "history"),
    ("history.jsonl", b"\xff\xfe\x00garbage\n[1]\n", ["doctor", "--fail-on", "warning"], 5, "history"),
    ("misclassified.npz", b"PK\x03\x04garbage", ["doctor", "--report"], 0, None),
]


@pytest.mark.parametrize("name, content, command, code, words", RUN_FILE_CASES)
def test_a_damaged_file_of_a_run(user, run_copy, tmp_path, name, content, command, code, words):
    (run_copy / name).write_bytes(content)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    before = snapshot(run_copy)
    args = {"evaluate": ["evaluate", run_copy], "predict": ["predict", run_copy, tmp_path / "a.png"],
            "train": ["train", "--resume", run_copy, "--quiet"], "doctor": ["doctor", run_copy]}[command[0]]
    result = user.run(*args, *command[1:] if command[0] == "doctor" else [])
    assert result.code == code, result
    if words:
        assert words in result.err + result.out, result
    no_traceback(result)
    if "--report" not in command:
        assert snapshot(run_copy) == before
