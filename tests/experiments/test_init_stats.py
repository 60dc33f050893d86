"""`init-stats` (seed §3): the numbers behind the layer-by-layer histograms, and the command."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from cnntricks.cli import main
from cnntricks.experiments import EXPERIMENTS
from cnntricks.experiments.init_stats import BUDGETS, measure

LAST = -1  # layer 10


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("init-stats")
    return out, EXPERIMENTS.create("init-stats", out, budget="smoke")


def std(result: dict, key: str, layer: int) -> float:
    return result["stats"][key][layer]["std"]


def test_the_run_writes_the_figure_the_numbers_and_the_table(smoke):
    out, result = smoke
    assert set(result["files"]) == {"figure", "numbers", "table"}
    with Image.open(result["files"]["figure"]) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]  # 10 layers across, 6 rows down
    numbers = json.loads((out / "results.json").read_text())
    assert numbers["stats"] == result["stats"] and numbers["depth"] == 10
    assert set(numbers["stats"]) == {f"{a}/{s}" for a in ("tanh", "relu")
                                     for s in ("small_normal", "calibrated", "he_normal")}
    assert "| tanh/calibrated |" in (out / "results.md").read_text()


def test_the_numbers_show_what_the_seed_says(smoke):
    _, result = smoke
    assert std(result, "tanh/small_normal", LAST) < 0.01  # collapsed to 0 (measured ~1e-21)
    assert std(result, "tanh/calibrated", LAST) > 0.1  # still spread (measured 0.22)
    he_first, he_last = std(result, "relu/he_normal", 0), std(result, "relu/he_normal", LAST)
    assert he_first / 2 < he_last < 2 * he_first  # He keeps ReLU's spread through depth
    # calibrated ignores ReLU's discarded half: the second moment halves a layer, ~2^-4.5 in std by layer 10
    assert std(result, "relu/calibrated", LAST) < std(result, "relu/calibrated", 0) / 10


def test_the_same_seed_repeats_and_seeds_are_averaged(smoke):
    _, first = smoke
    numbers = lambda seed, seeds: measure(seed=seed, seeds=seeds, budget=BUDGETS["smoke"], data=None)[0]
    assert numbers(0, 1) == first["stats"]
    two, other = numbers(0, 2), numbers(1, 1)
    key = "tanh/calibrated"
    assert two[key][LAST]["std"] == pytest.approx((first["stats"][key][LAST]["std"] + other[key][LAST]["std"]) / 2)
    assert other[key][LAST]["std"] != first["stats"][key][LAST]["std"]


def test_an_unknown_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="budget 'tiny' is not one of smoke, small, full"):
        EXPERIMENTS.create("init-stats", tmp_path, budget="tiny")


def test_the_command_writes_to_results_by_default_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "init-stats", "--budget", "smoke"]) == 0
    out = capsys.readouterr().out
    figure = tmp_path / "results" / "init-stats" / "init_stats.png"
    assert figure.is_file() and f"figure: {figure.relative_to(tmp_path)}" in out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines() if line.startswith(("tanh", "relu"))}
    assert len(rows) == 6 and float(rows["tanh", "small_normal"][-1]) < 0.01


def test_the_command_reads_real_data_when_given(tmp_path, capsys):
    assert main(["experiment", "init-stats", "--budget", "smoke", "--data", "digits", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["data"] == "digits"


def test_an_unknown_experiment_is_a_usage_error_with_a_suggestion(capsys):
    assert main(["experiment", "init-stat"]) == 2
    assert "unknown experiment 'init-stat' (did you mean 'init-stats'?)" in capsys.readouterr().err


def test_bad_options_are_usage_errors(tmp_path, capsys):
    assert main(["experiment", "init-stats", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["experiment", "init-stats", "--budget", "tiny"])
    assert exit.value.code == 2


def test_help_lists_the_experiments(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["experiment", "--help"])
    assert exit.value.code == 0
    assert "init-stats" in capsys.readouterr().out


def test_data_with_a_root_reads_the_users_own_images(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    arrays = tmp_path / "mine.npz"
    np.savez(arrays, x=rng.integers(0, 256, (300, 8, 8), dtype=np.uint8), y=np.arange(300) % 3)
    out = tmp_path / "out"
    assert main(["experiment", "init-stats", "--budget", "smoke", "--data", f"npz:{arrays}", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["data"] == f"npz:{arrays}"
    from cnntricks.experiments.common import data_overrides
    assert data_overrides("image-folder:photos/") == ["data.source=image-folder", "data.root=photos/"]
    assert data_overrides("digits") == ["data.source=digits"]
