"""`cnntricks evaluate RUN [--data.root other/] [--split val] [--json]` on a trained run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from e2e_helpers import SMALL, read_json

from cnntricks.data.synthetic import make_images

CLASSES = ["horizontal", "vertical", "diagonal", "rings"]


def save_npz(path, seed: int, train: int = 192, test: int = 64, classes=CLASSES):
    """Synthetic stripes as a user's .npz: x, y, x_test, y_test (N, H, W, C uint8) and class names."""
    generator = torch.Generator().manual_seed(seed)
    arrays = {}
    for name, count in (("", train), ("_test", test)):
        labels = torch.arange(count) % len(classes)
        images = make_images(labels, 16, 3, generator)
        arrays["x" + name] = images.permute(0, 2, 3, 1).numpy()
        arrays["y" + name] = labels.numpy()
    np.savez(path, classes=np.array(classes), **arrays)
    return path


@pytest.fixture
def npz_run(user, tmp_path):
    """A run trained on one npz file; returns (run directory, its summary)."""
    save_npz(tmp_path / "a.npz", seed=1)
    result = user.run("train", *SMALL, "data.source=npz", f"data.root={tmp_path / 'a.npz'}", "train.epochs=3",
                      "optim.batch_size=16", "--run-dir", "run", "--quiet")
    assert result.code == 0, result
    return user.cwd / "run", read_json(user.cwd / "run" / "summary.json")


def test_evaluate_prints_a_per_class_table_and_the_accuracy(user, npz_run):
    run, summary = npz_run
    result = user.run("evaluate", run)
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split() == ["label", "class", "trained", "on", "images", "recall", "precision", "F1"]
    rows = [line.split() for line in lines[2:2 + len(CLASSES)]]
    assert [row[1] for row in rows] == CLASSES and [int(row[3]) for row in rows] == [16] * 4
    assert [int(row[2]) for row in rows] == summary["train_counts"]
    assert f"test accuracy {100 * summary['test_acc']:.2f}% on 64 images" in result.out
    assert f"balanced accuracy {100 * summary['test_balanced_acc']:.2f}%" in result.out
    assert "recall by training images per class: " in result.out


def test_evaluate_json_matches_the_summary_of_training(user, npz_run):
    run, summary = npz_run
    result = user.run("evaluate", run, "--json")
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["split"] == "test" and report["images"] == summary["split_sizes"]["test"] == 64
    assert report["acc"] == summary["test_acc"] and report["loss"] == summary["test_loss"]  # same TTA, same model
    assert [r["acc"] for r in report["per_class"]] == [r["acc"] for r in summary["per_class"]]
    assert report["balanced_acc"] == summary["test_balanced_acc"] and report["shot_acc"] == summary["test_shot_acc"]
    assert [r["name"] for r in report["per_class"]] == CLASSES

    val = json.loads(user.run("evaluate", run, "--split", "val", "--json").out)
    assert val["split"] == "val" and val["images"] == summary["split_sizes"]["val"]
    assert val["acc"] == summary["val_acc"]  # the last epoch's validation accuracy


def test_evaluate_on_other_data_with_the_same_classes(user, npz_run, tmp_path):
    run, summary = npz_run
    other = save_npz(tmp_path / "b.npz", seed=7, test=40)
    as_option = user.run("evaluate", run, "--data.root", other, "--json")
    as_override = user.run("evaluate", run, f"data.root={other}", "--json")
    assert as_option.code == as_override.code == 0, as_option
    assert as_option.out == as_override.out
    report = json.loads(as_option.out)
    assert report["images"] == 40  # b.npz's own test split, not a.npz's 64 images
    assert report["loss"] != summary["test_loss"]
    # the run's own config is left as it was
    assert f"root: {tmp_path / 'a.npz'}" in (run / "config.yaml").read_text()


def test_evaluate_refuses_data_that_does_not_fit_the_model(user, npz_run, tmp_path):
    run, _ = npz_run
    three = save_npz(tmp_path / "three.npz", seed=3, classes=["a", "b", "c"])
    result = user.run("evaluate", run, f"data.root={three}")
    assert result.code == 3, result
    assert "classes" in result.err and "Traceback" not in result.err

    renamed = save_npz(tmp_path / "renamed.npz", seed=3, classes=["n", "e", "s", "w"])
    result = user.run("evaluate", run, f"data.root={renamed}")
    assert result.code == 3, result
    assert "classes" in result.err


def test_evaluate_an_empty_split_is_a_usage_error(user):
    assert user.run("train", *SMALL, "train.epochs=1", "data.val_fraction=0", "--run-dir", "run", "--quiet").code == 0
    result = user.run("evaluate", "run", "--split", "val")
    assert result.code == 2, result
    assert "val" in result.err and "empty" in result.err


def test_evaluate_a_folder_that_is_not_a_run(user, tmp_path):
    (tmp_path / "photos").mkdir()
    result = user.run("evaluate", tmp_path / "photos")
    assert result.code == 4, result
    assert "not a run directory" in result.err and "Traceback" not in result.err
    assert user.run("evaluate", tmp_path / "nowhere").code == 4
