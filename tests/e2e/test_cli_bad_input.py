"""Bad input through the command line: the exit code the README promises and a message that says
what was wrong, where, and what to do (house style rule 9) - never a traceback."""
from __future__ import annotations

import io

import numpy as np
import pytest
from e2e_helpers import SMALL
from PIL import Image

from cnntricks.cli_parser import build_parser

TINY = ["model.width=4", "model.depth=1", "train.epochs=1", "optim.batch_size=4", "train.threads=1", "--quiet"]


def no_traceback(result) -> None:
    assert "Traceback" not in result.err, result


@pytest.mark.parametrize("argument, code, words", [
    ("optim.lrr=0.05", 2, ["unknown key 'optim.lrr'", "did you mean 'lr'"]),
    ("optimm.lr=0.05", 2, ["unknown section 'optimm'", "did you mean 'optim'"]),
    ("optim.lr=fast", 2, ["optim.lr", "expected float"]),
    ("optim.lr=-1", 2, ["optim.lr", "out of range", "> 0"]),
    ("model.name=vgg16", 2, ["model.name", "choose one of", "did you mean 'vgg'"]),
    ("train.epochs=2.5", 2, ["train.epochs", "expected int"]),
    ("missing.yaml", 2, ["config file 'missing.yaml' does not exist"]),
    ("optim.lr", 2, ["neither a config file"]),
    ("--optim.lrr=0.05", 2, ["did you mean 'lr'"]),
    ("--no-such-option", 2, ["unrecognized option '--no-such-option'"]),
    ("train.device=cuda", 2, ["train.device=cuda", "no CUDA device"]),
    ("train.precision=fp16", 2, ["train.precision=fp16", "CPU"]),
])
def test_bad_configuration_stops_before_any_work(user, argument, code, words):
    result = user.run("train", "data.source=synthetic", argument, "--run-dir", "run", "--quiet")
    assert result.code == code, result
    assert all(word in result.err for word in words), result.err
    assert "configuration error" in result.err
    no_traceback(result)
    assert not (user.cwd / "run").exists()  # stopped before any work


def test_a_bad_key_in_a_config_file_names_the_key(user, tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 0.1\n  momentun: 0.9\n")
    result = user.run("train", tmp_path / "bad.yaml", "--quiet")
    assert result.code == 2 and "optim.momentun" in result.err and "did you mean 'momentum'" in result.err, result
    (tmp_path / "broken.yaml").write_text("optim: [lr\n")
    result = user.run("train", tmp_path / "broken.yaml", "--quiet")
    assert result.code == 2 and "not valid YAML" in result.err, result


def test_resume_of_a_folder_without_a_run(user, tmp_path):
    result = user.run("train", "--resume", tmp_path / "nothing", "--quiet")
    assert result.code == 4 and "no config.yaml" in result.err, result


def test_missing_fashion_mnist_names_the_package_and_data_root(user, tmp_path):
    (tmp_path / "empty").mkdir()
    result = user.run("train", f"data.root={tmp_path / 'empty'}", "data.download=false", "--run-dir", "run", "--quiet")
    assert result.code == 3, result
    assert "dataset-fashion-mnist" in result.err and "data.root" in result.err and "data error" in result.err
    no_traceback(result)


def save_folder(root, classes=("cat", "dog"), per_class=6):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{n}.{'png' if n % 2 else 'jpg'}")
    return root


def truncated_jpeg(path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


def test_image_folder_with_an_empty_class_folder(user, tmp_path):
    root = save_folder(tmp_path / "photos")
    (root / "fox").mkdir()
    result = user.run("train", "data.source=image-folder", f"data.root={root}", *TINY, "--run-dir", "run")
    assert result.code == 3, result
    assert "fox" in result.err and "no images" in result.err
    no_traceback(result)


def test_a_corrupt_jpeg_is_skipped_with_a_count_or_refused_when_strict(user, tmp_path):
    root = save_folder(tmp_path / "photos")
    truncated_jpeg(root / "dog" / "broken.jpg")
    result = user.run("train", "data.source=image-folder", f"data.root={root}", *TINY, "--run-dir", "lenient")
    assert result.code == 0, result
    assert "cnntricks: warning: data.root: 1 of 13 files" in result.err and "1 unreadable image" in result.err
    assert "dog/broken.jpg" in result.err
    assert (user.cwd / "lenient" / "summary.json").is_file()

    strict = user.run("train", "data.source=image-folder", f"data.root={root}", "data.strict=true", *TINY,
                      "--run-dir", "strict")
    assert strict.code == 3, strict
    assert "dog/broken.jpg" in strict.err and "data.strict" in strict.err
    no_traceback(strict)


def test_npz_with_more_labels_than_images(user, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 8, 8), np.uint8), y=np.arange(11) % 2)
    result = user.run("train", "data.source=npz", f"data.root={tmp_path / 'data.npz'}", *TINY, "--run-dir", "run")
    assert result.code == 3, result
    assert "11 labels" in result.err and "10 images" in result.err
    no_traceback(result)


def test_every_command_has_help(user):
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) >= {"train", "evaluate", "predict", "config"}
    for command in [[], *([name] for name in commands)]:
        result = user.run(*command, "--help")
        assert result.code == 0, (command, result)
        assert result.out.startswith("usage: cnntricks") and len(result.out.splitlines()) > 3


def test_no_command_and_unknown_command_are_usage_errors(user):
    assert user.run().code == 2
    result = user.run("trian")
    assert result.code == 2 and "invalid choice" in result.err
    assert user.run("predict", "run").code == 2  # no images given


def test_train_smoke_with_small_settings_has_no_warnings(user):
    """The small settings every e2e test builds on train cleanly: no stray warning on stderr."""
    result = user.run("train", *SMALL, "--run-dir", "run", "--quiet")
    assert result.code == 0, result
    assert "warning" not in result.err, result.err
