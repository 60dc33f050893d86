"""`cnntricks train` as a user runs it: the run directory it writes, early stopping, resuming a
finished run for more epochs, and where its files go (README: "The run directory")."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from e2e_helpers import SMALL, read_history, read_json

from cnntricks import config

EPOCH_KEYS = {"kind", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_second"}
BATCH_KEYS = {"kind", "step", "epoch", "loss", "lr"}
SUMMARY_KEYS = {"test_acc", "test_loss", "best_val_acc", "val_acc", "train_acc", "train_seconds", "epochs",
                "steps", "images_per_second", "stop_reason", "device", "precision", "parameters", "classes",
                "per_class", "split_sizes", "train_counts", "test_balanced_acc", "test_macro_f1",
                "test_shot_acc"}


def console_script() -> str:
    """The `cnntricks` entry point installed beside this Python (not a shim that may pick another one)."""
    script = Path(sys.executable).with_name("cnntricks")
    assert script.is_file(), f"no cnntricks console script beside {sys.executable}; pip install -e ."
    return str(script)


def test_train_writes_the_documented_run_directory_and_refuses_to_overwrite_it(user):
    done = subprocess.run([console_script(), "train", *SMALL, "--run-dir", "runs/first"], cwd=user.cwd,
                          env=user.env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "runs/first" in done.stdout  # the summary table
    run = user.cwd / "runs" / "first"

    assert config.load(run / "config.yaml") == config.load(None, SMALL)  # every key, resolved
    assert set(config.load(run / "config.yaml").to_dict()) == set(config.SECTIONS)
    normalization = read_json(run / "preprocess.json")
    assert set(normalization) == {"mean", "std"} and len(normalization["mean"]) == len(normalization["std"]) == 3
    assert all(0 < m < 1 for m in normalization["mean"]) and all(0 < s < 1 for s in normalization["std"])

    history = read_history(run)
    batches = [r for r in history if r["kind"] == "batch"]
    epochs = [r for r in history if r["kind"] == "epoch"]
    assert batches and all(set(r) == BATCH_KEYS for r in batches)
    assert [r["step"] for r in batches] == list(range(1, len(batches) + 1))  # log_every=1: every step
    assert [r["epoch"] for r in epochs] == [1, 2] and all(set(r) == EPOCH_KEYS for r in epochs)
    assert all(0 <= r["train_acc"] <= 1 and 0 <= r["val_acc"] <= 1 for r in epochs)

    summary = read_json(run / "summary.json")
    assert SUMMARY_KEYS <= set(summary)
    assert summary["epochs"] == 2 and summary["steps"] == len(batches) and summary["stop_reason"] == "completed"
    assert 0 <= summary["test_acc"] <= 1 and summary["best_val_acc"] == max(r["val_acc"] for r in epochs)
    assert summary["train_seconds"] > 0 and summary["images_per_second"] > 0
    assert summary["classes"] == ["horizontal", "vertical", "diagonal", "rings"]
    assert sum(summary["split_sizes"].values()) == 512 + 128

    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == "epoch-0002"
    assert {p.name for p in (run / "checkpoints" / latest).iterdir()} == {"model.safetensors", "state.safetensors",
                                                                          "state.json"}
    for figure in ("loss.png", "accuracy.png", "lr.png"):
        assert (run / "report" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    table = (run / "metrics.csv").read_text().splitlines()  # one row per epoch, for a spreadsheet
    assert table[0].split(",")[:5] == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"] and len(table) == 3

    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = user.run("train", *SMALL, "optim.lr=0.01", "--run-dir", run)
    assert again.code == 4, again
    assert "--resume" in again.err and str(run) in again.err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing touched


def test_target_accuracy_stops_early_at_the_first_epoch_that_reaches_it(user):
    result = user.run("train", *SMALL, "train.epochs=12", "optim.batch_size=16", "schedule.name=constant",
                      "optim.lr=0.05", "train.target_accuracy=0.6", "--run-dir", "runs/target", "--quiet")
    assert result.code == 0, result
    run = user.cwd / "runs" / "target"
    summary = read_json(run / "summary.json")
    epochs = [r for r in read_history(run) if r["kind"] == "epoch"]
    assert summary["stop_reason"] == "target_accuracy", summary
    assert summary["epochs"] == len(epochs) < 12
    assert epochs[-1]["val_acc"] >= 0.6 and all(r["val_acc"] < 0.6 for r in epochs[:-1])
    events = [r for r in read_history(run) if r["kind"] == "event"]
    assert [e["event"] for e in events] == ["target_reached"] and events[0]["epoch"] == len(epochs)
    assert (run / "checkpoints" / "latest").read_text().strip() == f"epoch-{len(epochs):04d}"
    assert "target_accuracy" in result.out  # the summary table says why it stopped


def test_resume_a_finished_run_for_more_epochs(user):
    assert user.run("train", *SMALL, "--run-dir", "runs/more", "--quiet").code == 0
    run = user.cwd / "runs" / "more"
    first = read_history(run)

    again = user.run("train", "--resume", run, "train.epochs=4", "--quiet")
    assert again.code == 0, again
    assert "warning" not in again.err, again.err  # e.g. a history.jsonl left open
    summary = read_json(run / "summary.json")
    history = read_history(run)
    epochs = [r["epoch"] for r in history if r["kind"] == "epoch"]
    steps = [r["step"] for r in history if r["kind"] == "batch"]
    assert summary["epochs"] == 4 and epochs == [1, 2, 3, 4]
    assert steps == list(range(1, len(steps) + 1)) and summary["steps"] == len(steps)
    assert history[:len(first)] == first  # the finished part is kept as it was
    assert config.load(run / "config.yaml").train.epochs == 4  # the run's config says what it ran
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch-0004"

    # Resuming a run that has nothing left to do changes no number and repeats no line.
    weights = (run / "checkpoints" / "epoch-0004" / "model.safetensors").read_bytes()
    once_more = user.run("train", "--resume", run, "--quiet")
    assert once_more.code == 0, once_more
    assert read_history(run) == history
    assert (run / "checkpoints" / "epoch-0004" / "model.safetensors").read_bytes() == weights
    assert {k: v for k, v in read_json(run / "summary.json").items() if k != "train_seconds"} == \
           {k: v for k, v in summary.items() if k != "train_seconds"}


def test_resume_refuses_a_model_change_and_keeps_the_run_usable(user):
    assert user.run("train", *SMALL, "train.epochs=1", "--run-dir", "run", "--quiet").code == 0
    run = user.cwd / "run"
    saved = (run / "config.yaml").read_text()
    wrong = user.run("train", "--resume", run, "model.width=16", "train.epochs=2", "--quiet")
    assert wrong.code == 2, wrong
    assert "model.width" in wrong.err or "does not fit" in wrong.err
    assert "Traceback" not in wrong.err
    assert (run / "config.yaml").read_text() == saved  # a failed resume must not rewrite the run's config
    assert user.run("train", "--resume", run, "train.epochs=2", "--quiet").code == 0


def test_default_run_directory_and_caches_stay_in_the_users_places(user, tmp_path):
    """README: the default run directory is runs/<timestamp>-<train.name>, under the working
    directory; decoded images are cached in $XDG_CACHE_HOME/cnntricks."""
    from PIL import Image
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for n in range(10):
            Image.new("RGB", (8, 8), tuple(c + n for c in colour)).save(tmp_path / "photos" / name / f"{n}.png")
    result = user.spawn("train", "data.source=image-folder", f"data.root={tmp_path / 'photos'}", "model.width=4",
                        "model.depth=1", "train.epochs=1", "optim.batch_size=8", "train.threads=1",
                        "train.name=colours", "--quiet")
    assert result.code == 0, result
    runs = list((user.cwd / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-colours") and (runs[0] / "summary.json").is_file()
    cached = list((Path(user.env["XDG_CACHE_HOME"]) / "cnntricks").rglob("*.safetensors"))
    assert cached, "the decoded image cache is not under $XDG_CACHE_HOME/cnntricks"
    home = Path(user.env["HOME"])
    assert not (home / ".cache" / "cnntricks").exists()


def test_the_same_command_twice_gives_the_same_numbers(user):
    """Seeds live in the config (house style rule 5): two fresh runs agree exactly."""
    for name in ("a", "b"):
        assert user.run("train", *SMALL, "--run-dir", name, "--quiet").code == 0
    a, b = read_json(user.cwd / "a" / "summary.json"), read_json(user.cwd / "b" / "summary.json")
    assert (a["test_loss"], a["best_val_acc"]) == (b["test_loss"], b["best_val_acc"])


def test_a_resume_says_from_where_and_a_run_stopped_before_its_first_checkpoint_says_it_starts_over(user):
    assert user.run("train", *SMALL, "train.epochs=1", "--run-dir", "r", "--quiet").code == 0
    resumed = user.run("train", "--resume", "r", "train.epochs=2")
    assert resumed.code == 0, resumed
    assert "resuming r from epoch-0001: epoch 1 of 2 done, step" in resumed.out
    early = user.cwd / "early"  # a run killed while loading its data: config.yaml, no checkpoint
    early.mkdir()
    (early / "config.yaml").write_text((user.cwd / "r" / "config.yaml").read_text())
    again = user.run("train", *SMALL, "train.epochs=1", "--run-dir", "early")
    assert again.code == 0, again
    assert "early holds a run stopped before its first checkpoint: nothing to continue, so it starts over" in again.out


def test_the_power_of_2_advice_is_for_a_size_the_user_chose(user):
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(user.cwd / "twelve.npz", x=rng.integers(0, 256, (120, 12, 12), dtype=np.uint8), y=np.arange(120) % 3)
    native = user.run("train", *SMALL, "data.source=npz", f"data.root={user.cwd / 'twelve.npz'}", "train.epochs=1",
                      "--run-dir", "native", "--quiet")
    assert native.code == 0 and "power-of-2" not in native.err, native.err  # the data's own 12x12: not a choice
    chosen = user.run("train", *SMALL, "data.image_size=12", "train.epochs=1", "--run-dir", "twelve", "--quiet")
    assert chosen.code == 0 and "image size 12x12" in chosen.err and "data.image_size=16" in chosen.err


def test_device_and_precision_flags_are_the_config_keys(user):
    made = user.run("train", *SMALL, "train.epochs=1", "train.keep=both", "--device", "cpu", "--precision", "fp32",
                    "--run-dir", "flags", "--quiet")
    assert made.code == 0, made
    cfg = config.load(user.cwd / "flags" / "config.yaml")
    assert (cfg.train.device, cfg.train.precision) == ("cpu", "fp32")
    assert read_json(user.cwd / "flags" / "summary.json")["precision"] == "fp32"
    evaluated = user.run("evaluate", "flags", "--precision", "fp32", "--checkpoint", "best", "--json")
    assert evaluated.code == 0, evaluated
    missing = user.run("evaluate", "flags", "--checkpoint", "epoch-0009")
    assert missing.code == 4 and "kept: checkpoints/epoch-0001, best" in missing.err
    wrong = user.run("train", *SMALL, "--precision", "fp8")
    assert wrong.code == 2 and "invalid choice: 'fp8'" in wrong.err
