import base64
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cnntricks.doctor import Finding
from cnntricks.monitor import histogram_edges
from cnntricks.report import FIGURES, figures, model_figures, write_report
from cnntricks.rundir import first_conv_weight

ALL_FIGURES = [spec.file for spec in FIGURES]
HISTORY_FIGURES = ["loss.png", "accuracy.png", "lr.png"]
HOSTILE = "<script>alert(1)</script>"


def layer(kind: str, rng, units: int = 8) -> dict:
    values = np.tanh(rng.normal(0, 1, 2000)) if kind == "Tanh" else np.maximum(rng.normal(0, 1, 2000), 0)
    counts, _ = np.histogram(values, bins=30, range=(values.min(), values.max()))
    record = {"type": kind, "mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
              "max": float(values.max()), "hist": counts.tolist()}
    if kind == "ReLU":
        record.update(dead=float(rng.integers(0, units)) / units, units=units)
    else:
        record["saturated"] = float((np.abs(values) > 0.99).mean())
    return record


def write_run(run, classes=("t-shirt", "trouser", "bag"), epochs=3, steps_per_epoch=20, full=True):
    """A run directory as the trainer writes it; with `full=False` only history.jsonl."""
    rng = np.random.default_rng(0)
    run.mkdir(parents=True, exist_ok=True)
    lines, step = [], 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            step += 1
            lines.append({"kind": "batch", "step": step, "epoch": epoch,
                          "loss": 2.3 * math.exp(-step / 25) + 0.3 + rng.normal(0, 0.05), "lr": 0.1 / epoch})
        lines.append({"kind": "epoch", "epoch": epoch, "train_loss": 1.5 / epoch, "train_acc": 1 - 0.5 / epoch,
                      "val_loss": 1.6 / epoch, "val_acc": 0.9 - 0.5 / epoch, "lr": 0.1 / epoch, "seconds": 2.0,
                      "images_per_second": 640.0})
        if epoch == 2:
            lines.append({"kind": "event", "epoch": 2, "step": step, "event": "lr_divided", "message": "LR / 2"})
    (run / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if not full:
        return run
    stats = [{"step": s, "epoch": 1 + (s - 1) // steps_per_epoch, "grad_norm_total": 1.0 + rng.random(),
              "layers": {"stages.0.3": layer("ReLU", rng), "stages.1.2": layer("Tanh", rng)},
              "params": {"stages.0.0.weight": {"grad_norm": 0.1, "weight_norm": 3.0, "update_ratio": 1e-3},
                         "head.weight": {"grad_norm": 0.5, "weight_norm": 1.0, "update_ratio": 2e-3}}}
             for s in range(1, step + 1, 5)]
    (run / "stats.jsonl").write_text("".join(json.dumps(record) + "\n" for record in stats))
    folder = run / "checkpoints" / f"epoch-{epochs:04d}"
    folder.mkdir(parents=True)
    save_file({"stages.0.0.weight": torch.randn(8, 3, 3, 3), "stages.1.0.weight": torch.randn(16, 8, 3, 3),
               "head.weight": torch.randn(3, 16)}, folder / "model.safetensors")
    (folder / "state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text(folder.name + "\n")
    k = len(classes)
    confusion = (np.eye(k, dtype=int) * 80 + rng.integers(0, 10, (k, k))).tolist()
    per_class = [{"class": i, "count": sum(confusion[i]), "acc": confusion[i][i] / sum(confusion[i]), "name": c}
                 for i, c in enumerate(classes)]
    (run / "summary.json").write_text(json.dumps({
        "test_acc": 0.8123, "test_loss": 0.5, "best_val_acc": 0.7345, "val_acc": 0.73, "train_acc": 0.83,
        "train_seconds": 6.0, "epochs": epochs, "steps": step, "images_per_second": 640.0,
        "stop_reason": "completed", "classes": list(classes), "per_class": per_class, "confusion": confusion}))
    (run / "data.json").write_text(json.dumps({"source": "image-folder", "classes": list(classes), "channels": 3}))
    np.savez(run / "misclassified.npz", images=rng.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8),
             labels=np.array([0, 1, 2, 0, 1]), predicted=np.array([1, 2, 0, 2, 0]),
             confidence=np.array([0.6, 0.99, 0.7, 0.8, 0.55]))
    (run / "config.yaml").write_text("data:\n  source: image-folder\n  root: photos<&>\noptim:\n  lr: 0.1\n")
    return run


def finding(id="overfitting", severity="warning", title="Validation stalls below train", **extra):
    return Finding(id, severity, title, evidence="train 83% vs validation 73%", explanation="seed §7, Fig. 3",
                   advice="regularize more", **extra)


def colors_in(path) -> int:
    with Image.open(path) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colors) if colors else 1 << 20


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_a_full_run_gets_every_figure_embedded_in_the_page(tmp_path):
    run = write_run(tmp_path / "run")
    index = write_report(run, findings=[])
    assert index == run / "report" / "index.html"
    page = index.read_text()
    for name in ALL_FIGURES:
        assert colors_in(run / "report" / name) > 16, f"{name} is blank"
    # each figure is in the page, byte for byte, in FIGURES order
    assert embedded_images(page) == [(run / "report" / name).read_bytes() for name in ALL_FIGURES]
    assert 'class="plot skipped"' not in page and 'class="note"' not in page
    assert "No findings above info" in page
    for number in ("81.23%", "73.45%", "640", "completed"):  # the headline from summary.json
        assert number in page
    contents = page[page.index("<nav>"):page.index("</nav>")]  # the contents, in view while scrolling
    assert all(f'href="#fig-{name.removesuffix(".png")}"' in contents for name in ALL_FIGURES)
    assert "position: sticky" in page


def test_the_filters_figure_is_sized_to_its_filters():
    import numpy as np
    rng = np.random.default_rng(0)
    small = model_figures.filters_figure(rng.normal(size=(16, 1, 3, 3)), "stem", "t").get_size_inches()
    large = model_figures.filters_figure(rng.normal(size=(64, 3, 7, 7)), "stem", "t").get_size_inches()
    assert small[0] < large[0] <= 7


def test_a_run_with_only_a_history_gets_its_curves_and_a_note_for_each_missing_figure(tmp_path):
    run = write_run(tmp_path / "run", full=False)
    page = write_report(run, findings=[]).read_text()
    assert sorted(p.name for p in (run / "report").glob("*.png")) == sorted(HISTORY_FIGURES)
    assert len(embedded_images(page)) == 3
    for needs in ("needs stats.jsonl", "needs a checkpoint", "needs summary.json", "needs misclassified.npz"):
        assert needs in page
    assert page.count('class="plot skipped"') == len(ALL_FIGURES) - 3
    assert "numbers from history.jsonl" in page and "81.23%" not in page and "73.33%" in page  # best val_acc


def test_a_figure_whose_input_disappears_is_removed_from_report(tmp_path):
    run = write_run(tmp_path / "run")
    write_report(run, findings=[])
    (run / "stats.jsonl").unlink()
    write_report(run, findings=[])
    assert not (run / "report" / "activations.png").exists()
    assert (run / "report" / "loss.png").exists()


def test_user_strings_are_escaped(tmp_path):
    run = write_run(tmp_path / "a&b<c" / "run<1>", classes=(HOSTILE, "a$b$c", "x&y"))
    hostile = finding(title=f"title {HOSTILE}", change={"model.name": "<b>vgg</b>"}, figure="<img src=x>")
    page = write_report(run, findings=[hostile]).read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the class name and the title, as text
    assert "a&amp;b&lt;c" in page and "a&b<c" not in page  # the path
    assert "run&lt;1&gt;" in page
    assert "photos&lt;&amp;&gt;" in page  # config.yaml
    assert "<b>vgg</b>" not in page and "<img src=x>" not in page
    assert colors_in(run / "report" / "confusion.png") > 16  # '$' in a class name is not read as math


def test_the_page_makes_no_requests(tmp_path):
    run = write_run(tmp_path / "run")
    page = write_report(run, findings=[finding(figure="loss.png", change={"optim.lr": 0.01})]).read_text()
    assert "http://" not in page and "https://" not in page
    links = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page)
    assert links and all(link.startswith(("data:image/png;base64,", "#")) for link in links), links
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page


def test_findings_come_first_worst_first_with_their_command_and_figure(tmp_path):
    run = write_run(tmp_path / "run")
    found = [finding("plateau", "info", "Validation has stopped improving"),
             finding("overfitting", "warning", "Validation stalls below train", figure="accuracy.png"),
             finding("lr_too_high", "error", "The loss jumps", change={"optim.lr": 0.01, "optim.batch_size": 256},
                     figure="loss.png", step=40, epoch=2)]
    page = write_report(run, findings=found).read_text()
    where = [page.index(title) for title in ("The loss jumps", "Validation stalls below train",
                                              "Validation has stopped improving")]
    assert where == sorted(where) and where[-1] < page.index('id="figures"')
    assert f"cnntricks train {run}/config.yaml optim.lr=0.01 optim.batch_size=256" in page
    assert '<a href="#fig-loss">loss.png</a>' in page and 'id="fig-loss"' in page
    assert "step 40, epoch 2" in page
    assert "No findings above info" not in page


def test_only_info_findings_still_say_no_findings_above_info(tmp_path):
    page = write_report(write_run(tmp_path / "run"), findings=[finding("plateau", "info", "Slow")]).read_text()
    assert "No findings above info" in page and "Slow" in page


def test_a_failing_doctor_is_shown_in_the_page(tmp_path, monkeypatch):
    import cnntricks.doctor

    def broken(run_dir):
        raise RuntimeError("check <lr> failed")
    monkeypatch.setattr(cnntricks.doctor, "diagnose", broken)
    page = write_report(write_run(tmp_path / "run")).read_text()
    assert "The doctor could not read this run" in page and "RuntimeError: check &lt;lr&gt; failed" in page
    assert len(embedded_images(page)) == len(ALL_FIGURES)


def test_a_damaged_file_costs_one_figure_not_the_report(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "misclassified.npz").write_bytes(b"not a zip")
    page = write_report(run, findings=[]).read_text()
    assert "could not draw it" in page and len(embedded_images(page)) == len(ALL_FIGURES) - 1


# ---- the figures themselves ----------------------------------------------------------------

def test_rolling_quantiles_match_a_hand_computation():
    centres, (low, median, high) = figures.rolling_quantiles(np.arange(100.0), 11, (0.1, 0.5, 0.9))
    assert centres[0] == 5 and centres[-1] == 94
    # the window around i is i-5 .. i+5; numpy's linear quantile: 10% -> i-4, 90% -> i+4
    np.testing.assert_allclose(median, centres)
    np.testing.assert_allclose(low, centres - 4)
    np.testing.assert_allclose(high, centres + 4)


def band_height(noise: float) -> float:
    rng = np.random.default_rng(1)
    batches = [{"step": s, "epoch": 1, "loss": 2 * math.exp(-s / 100) + 0.5 + rng.normal(0, noise)}
               for s in range(1, 301)]
    axes = figures.loss_figure(batches, [], "t").axes[0]
    (band,) = [c for c in axes.collections if "spread" in c.get_label()]
    vertices = band.get_paths()[0].vertices  # the lower edge forward, then the upper edge back
    lower = np.interp(np.arange(50, 250), *vertices[1:len(vertices) // 2].T)
    upper = np.interp(np.arange(50, 250), *vertices[len(vertices) // 2:-1][::-1].T)
    return float(np.mean(upper - lower))


def test_the_loss_band_is_as_wide_as_the_batch_noise():
    # seed §7: the curve's "width" shows the batch-to-batch variance; 10-90% of a normal is 2.56 sigma
    quiet, noisy = band_height(0.02), band_height(0.2)
    assert noisy == pytest.approx(2.56 * 0.2, rel=0.25)
    assert noisy / quiet == pytest.approx(10, rel=0.3)


def test_the_loss_figure_marks_a_nonfinite_loss_and_goes_logarithmic():
    batches = [{"step": s, "epoch": 1, "loss": 10.0 ** s} for s in range(1, 8)] + [{"step": 8, "epoch": 1, "loss": None}]
    events = [{"kind": "event", "epoch": 1, "step": 8, "event": "nonfinite", "message": "inf"}]
    axes = figures.loss_figure(batches, [], "t", events).axes[0]
    (marker,) = [line for line in axes.get_lines() if "not finite" in line.get_label()]
    assert list(marker.get_xdata()) == [8, 8] and marker.get_color() == "red"
    assert axes.get_yscale() == "log"
    calm = [{"step": s, "epoch": 1, "loss": 1.0 + 0.1 * (s % 3)} for s in range(1, 40)]
    assert figures.loss_figure(calm, [], "t").axes[0].get_yscale() == "linear"


def test_the_accuracy_gap_is_shaded_and_counted():
    epochs = [{"epoch": 1, "train_acc": 0.6, "val_acc": 0.55}, {"epoch": 2, "train_acc": 0.95, "val_acc": 0.8}]
    axes = figures.accuracy_figure(epochs, "t").axes[0]
    assert "gap at epoch 2: +15.0 points" in [t.get_text() for t in axes.get_legend().get_texts()]
    assert len(axes.collections) == 1  # the shaded gap


def test_events_are_marked_on_the_lr_figure():
    batches = [{"step": s, "epoch": 1 + s // 10, "lr": 0.1 if s < 10 else 0.05} for s in range(1, 20)]
    events = [{"kind": "event", "epoch": 1, "step": 10, "event": "lr_divided", "message": "LR / 2"}]
    axes = figures.lr_figure(batches, [], "t", events).axes[0]
    (marker,) = [line for line in axes.get_lines() if line.get_label() == "lr_divided"]
    assert list(marker.get_xdata()) == [10, 10]


def test_activations_keep_network_order_and_draw_the_monitors_histogram(tmp_path):
    rng = np.random.default_rng(0)
    stats = [{"step": s, "layers": {"z.first": layer("ReLU", rng), "a.second": layer("Tanh", rng)}} for s in (1, 5)]
    figure = model_figures.activations_figure(stats, "t", histogram_edges)
    mean_axes = figure.subfigs[0].axes[0]
    assert [line.get_label() for line in mean_axes.get_lines()] == ["z.first (ReLU)", "a.second (Tanh)"]
    first, second = (line.get_color() for line in mean_axes.get_lines())
    assert sum(first[:3]) < sum(second[:3])  # deeper is lighter
    histogram = figure.subfigs[1].axes[0]
    (stairs,) = histogram.patches
    np.testing.assert_allclose(stairs.get_data().edges, histogram_edges(stats[-1]["layers"]["z.first"]))


def test_gradients_and_dead_units_draw_their_reference_lines():
    rng = np.random.default_rng(0)
    stats = [{"step": s, "grad_norm_total": 1.0, "layers": {"r": layer("ReLU", rng)},
              "params": {"w": {"grad_norm": 0.1, "weight_norm": 1.0, "update_ratio": 1e-3}}} for s in (1, 2, 3)]
    ratio_axes = model_figures.gradients_figure(stats, "t").axes[1]
    assert ratio_axes.get_yscale() == "log"
    assert [1e-3, 1e-3] in [list(line.get_ydata()) for line in ratio_axes.get_lines()]
    dead_axes = model_figures.dead_units_figure(stats, "t").axes[0]
    assert [0.4, 0.4] in [list(line.get_ydata()) for line in dead_axes.get_lines()]
    with pytest.raises(ValueError, match="nothing can die or saturate"):
        model_figures.dead_units_figure([{"step": 1, "layers": {"e": {"type": "ELU", "mean": 0, "std": 1}}}], "t")


def test_the_first_conv_is_the_one_reading_the_image(tmp_path):
    # safetensors stores names sorted: "stages.10" before "stages.2", "a.weight" first of all
    save_file({"stages.10.0.weight": torch.zeros(4, 8, 3, 3), "stages.2.0.weight": torch.zeros(8, 8, 3, 3),
               "stages.0.0.weight": torch.ones(8, 3, 5, 5), "a.weight": torch.zeros(4, 8, 1, 1),
               "head.weight": torch.zeros(3, 8)}, tmp_path / "model.safetensors")
    name, weight = first_conv_weight(tmp_path / "model.safetensors", channels=3)
    assert name == "stages.0.0.weight" and weight.shape == (8, 3, 5, 5)
    assert first_conv_weight(tmp_path / "model.safetensors", channels=None)[0] == "a.weight"
    save_file({"head.weight": torch.zeros(3, 8)}, tmp_path / "mlp.safetensors")
    assert first_conv_weight(tmp_path / "mlp.safetensors", channels=1) is None


@pytest.mark.parametrize("inputs", [1, 3])
def test_each_filter_is_min_max_scaled_rgb_or_gray(inputs):
    weight = np.random.default_rng(0).normal(0, 1, (4, inputs, 3, 3)) * np.array([1, 10, 100, 1000]).reshape(4, 1, 1, 1)
    mosaic = model_figures.filters_figure(weight, "conv", "t").axes[0].images[0].get_array()
    tiles = [mosaic[r:r + 3, c:c + 3] for r in (0, 4) for c in (0, 4)]  # 2 x 2 grid, 1-pixel gaps
    for tile in tiles:
        assert tile.min() == pytest.approx(0) and tile.max() == pytest.approx(1)
    gray = all(np.allclose(t[..., 0], t[..., 1]) and np.allclose(t[..., 1], t[..., 2]) for t in tiles)
    assert gray == (inputs == 1)


def test_the_confusion_matrix_is_normalized_per_true_class():
    matrix = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    image = np.ma.filled(model_figures.confusion_figure(matrix, ["a", "b", "c"], "t").axes[0].images[0].get_array(), np.nan)
    np.testing.assert_allclose(image[:2].sum(axis=1), 1)
    np.testing.assert_allclose(image[0], [0.8, 0.2, 0])
    assert np.isnan(image[2]).all()  # a class with no test image: no share
    rare = np.array([[999, 1], [0, 10]])  # 0.1% confused: "<1", never a printed 0 beside blank empty cells
    texts = {t.get_text() for t in model_figures.confusion_figure(rare, ["a", "b"], "t").axes[0].texts}
    assert texts == {"100", "<1"}


def test_misclassified_are_titled_true_to_predicted_most_confident_first():
    images = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    figure = model_figures.misclassified_figure(images, np.array([0, 1, 2]), np.array([1, 2, 0]),
                                          np.array([0.5, 0.9, 0.7]), ["cat", "dog", "bird"], "t")
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == ["dog → bird\n(0.90)", "bird → cat\n(0.70)", "cat → dog\n(0.50)"]
