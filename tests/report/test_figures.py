import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from cnntricks.report import plot_curves, read_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_history(run_dir, epochs=3, steps_per_epoch=20, validation=True, truncated=True):
    """A run that learns: loss falls, accuracy rises; with an event line and a cut-off last line."""
    lines = [{"kind": "event", "message": "run started", "time": 0}]
    noise = np.random.default_rng(0).normal(0, 0.1, epochs * steps_per_epoch)
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            step += 1
            lines.append({"kind": "batch", "step": step, "epoch": epoch, "loss": 2.3 * math.exp(-step / 30) + 0.3 + noise[step - 1],
                          "lr": 0.1 * (1 - step / (epochs * steps_per_epoch + 1))})
        lines.append({"kind": "epoch", "epoch": epoch, "train_loss": 2.0 / (epoch + 1), "train_acc": 0.95 - 0.45 / (epoch + 1),
                      "val_loss": 2.1 / (epoch + 1) if validation else None,
                      "val_acc": 0.85 - 0.4 / (epoch + 1) if validation else None, "lr": 0.1, "seconds": 1.5})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if truncated:
        text += '{"kind": "batch", "step": 999, "epo'  # killed mid-write
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "history.jsonl").write_text(text)
    return run_dir


def drawn_fraction(path) -> float:
    """Share of pixels that are not (near) white."""
    pixels = np.asarray(Image.open(path).convert("L"))
    return float((pixels < 240).mean())


def test_read_history_splits_kinds_and_skips_a_cut_off_last_line(tmp_path):
    batches, epochs = read_history(write_history(tmp_path / "run"))
    assert len(batches) == 60 and len(epochs) == 3
    assert batches[-1]["step"] == 60  # the truncated step 999 is gone
    assert all(record["kind"] == "batch" for record in batches)
    assert [record["epoch"] for record in epochs] == [0, 1, 2]


def test_read_history_skips_damage_before_the_last_line_and_says_where(tmp_path):
    run = write_history(tmp_path / "run", truncated=False)
    lines = (run / "history.jsonl").read_text().splitlines()
    from cnntricks.rundir import read_history as read_records
    whole = read_records(run)
    lines[5] = lines[5][:10]
    lines[7] = "[1, 2]"
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    skipped = []
    assert read_records(run, skipped) == [r for i, r in enumerate(whole) if i not in (5, 7)]
    assert [s.split(":")[0] for s in skipped] == ["history.jsonl, line 6", "history.jsonl, line 8"]


def test_read_history_says_when_there_is_no_history(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory"):
        read_history(tmp_path)


def test_plot_curves_writes_three_non_blank_pngs(tmp_path):
    run = write_history(tmp_path / "run")
    paths = plot_curves(run)
    assert [p.name for p in paths] == ["loss.png", "accuracy.png", "lr.png"]
    for path in paths:
        assert path.parent == run / "report"
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
        assert drawn_fraction(path) > 0.02, path.name
    assert sorted(os.listdir(run / "report")) == ["accuracy.png", "loss.png", "lr.png"]  # no temp files left


def test_curves_show_the_data(tmp_path):
    # the same figure with and without data must differ by more than a few pixels
    with_data = plot_curves(write_history(tmp_path / "full"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "history.jsonl").write_text('{"kind": "event", "message": "started"}\n')
    without = plot_curves(empty)
    for full, bare in zip(with_data, without):
        assert drawn_fraction(full) > drawn_fraction(bare) + 0.01, full.name


def test_single_epoch_without_validation(tmp_path):
    run = write_history(tmp_path / "run", epochs=1, steps_per_epoch=3, validation=False)
    paths = plot_curves(run, out_dir=tmp_path / "figures")
    assert all(p.parent == tmp_path / "figures" and p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    assert drawn_fraction(paths[1]) > 0.02  # one train-accuracy point, drawn as a marker


def test_rewriting_replaces_the_files(tmp_path):
    run = write_history(tmp_path / "run", epochs=1)
    first = plot_curves(run)[0].read_bytes()
    write_history(run, epochs=4)
    assert plot_curves(run)[0].read_bytes() != first


def test_drawing_leaves_pyplot_and_the_backend_alone():
    # the object API draws without pyplot, so a notebook's backend is never switched
    import subprocess
    import sys
    code = ("import sys, cnntricks.report, cnntricks.report.figures as figures, pathlib, tempfile; "
            "figures.save_png(figures.accuracy_figure([], 'x'), pathlib.Path(tempfile.mkdtemp()) / 'a.png'); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_label_smoothing_floor_is_the_entropy_of_the_smoothed_target_and_drawn():
    from cnntricks.report import figures
    # eps 0.1 over 10 classes: 0.91 on the true class, 0.01 on each other
    expected = -0.91 * math.log(0.91) - 9 * 0.01 * math.log(0.01)
    assert figures.smoothed_loss_floor(0.1, 10) == pytest.approx(expected) and expected == pytest.approx(0.5003, abs=1e-4)
    assert figures.smoothed_loss_floor(0.0, 10) == 0
    epochs = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.4}, {"epoch": 2, "train_loss": 0.7, "val_loss": 0.35}]
    drawn = figures.loss_figure([], epochs, "t", smoothing=(0.1, 10))
    labels = drawn.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("floor of the training loss: label smoothing 0.1") for label in labels)
    assert not any("floor" in label for label in figures.loss_figure([], epochs, "t").axes[0].get_legend_handles_labels()[1])
