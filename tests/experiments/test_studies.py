"""Each training study end to end at --budget smoke, through the real command line."""
import json
import math

import pytest

from cnntricks import config
from cnntricks.cli import main
from cnntricks.experiments import (BUDGETS, EXPERIMENTS, activations, augmentation, init_depth, learning_rate,
                                   preprocessing, regularization)
from cnntricks.experiments.common import (RunResult, budget_overrides, format_mean_std, mean_std, resolve_grid,
                                          smoothed)

# name -> (rows the table must have, a header column that carries the paper's / seed's side)
STUDIES = {"activations": (8, "Xu et al. 2015"),
           "regularization": (5, "Srivastava et al. 2014"),
           "init": (12, "He et al. 2015"),
           "learning-rate": (8, "the seed says"),
           "augmentation": (4, "the seed says"),
           "preprocessing": (5, "the seed says")}
MODULES = {"activations": activations, "regularization": regularization, "init": init_depth,
           "learning-rate": learning_rate, "augmentation": augmentation, "preprocessing": preprocessing}


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_runs_from_the_command_line(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["experiment", name, "--budget", "smoke", "--out", str(out)]) == 0
    rows, paper = STUDIES[name]
    numbers = json.loads((out / "results.json").read_text())
    assert len(numbers["rows"]) == rows
    assert any(paper in column for column in numbers["header"])
    table = (out / "results.md").read_text()
    assert f"cnntricks experiment {name} --budget smoke --seeds 1" in table
    assert table.count("\n| ") == rows + 1  # the header and a row per config
    assert list(out.glob("*.png"))
    configs = sorted((out / "configs").glob("*.yaml"))
    assert len(configs) == rows
    for path in configs:
        cfg = config.load(path)
        assert cfg.data.source == "digits" and cfg.train.threads == 1  # the smoke budget, resolved
    assert len(list((out / "runs").iterdir())) == rows
    printed = capsys.readouterr().out
    assert "results.md" in printed


def test_every_study_is_registered():
    assert set(STUDIES) <= set(EXPERIMENTS.names())


def test_paper_numbers_are_the_issues():
    from cnntricks.experiments import activations, regularization
    assert activations.PAPER == {"relu": 12.45, "leaky a=100": 12.66, "leaky a=5.5": 11.20, "prelu": 11.79,
                                 "rrelu": 11.19}
    assert [paper for _, _, paper in regularization.GRID] == [1.62, 1.60, 1.35, 1.25, 1.05]


def test_mean_std_skips_diverged_runs_and_says_so():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert format_mean_std([1.0, 3.0, math.nan]) == "2.00 ± 1.41 (1 of 3 diverged)"
    assert format_mean_std([math.nan]) == "—"


def test_smoothed_is_a_running_mean_that_skips_nans():
    assert smoothed([1.0, 3.0, math.nan, 5.0], 2).tolist() == [1.0, 2.0, 3.0, 5.0]


def test_final_loss_and_errors_of_a_run(tmp_path):
    run = RunResult("x", 0, tmp_path, 1.0, summary={"test_acc": 0.75, "train_acc": 0.9},
                    batch_loss=[4.0] * 90 + [1.0] * 10)
    assert run.final_loss() == 1.0
    assert run.test_error == pytest.approx(25.0) and run.train_error == pytest.approx(10.0)
    assert math.isnan(RunResult("x", 0, tmp_path, 1.0, diverged=True, batch_loss=[1.0]).final_loss())
    # a figure's y axis is scaled from the first finite loss (raw pixels can send the next ones to 1e21)
    assert RunResult("x", 0, tmp_path, 1.0, batch_loss=[math.nan, 2.3, 1e21]).first_loss() == 2.3
    assert math.isnan(RunResult("x", 0, tmp_path, 1.0, batch_loss=[math.nan]).first_loss())


def test_init_threshold_judges_training(tmp_path):
    from cnntricks.experiments.init_depth import steps_to, verdict
    flat = RunResult("flat", 0, tmp_path, 1.0, batch_loss=[2.3] * 50)
    falling = RunResult("falling", 0, tmp_path, 1.0, batch_loss=[2.3] * 20 + [1.0] * 30)
    assert verdict(flat, 2.05) == (False, None)
    trains, steps = verdict(falling, 2.05)
    assert trains and 20 < steps <= 30
    assert steps_to([3.0, 1.0], 2.5) is None or steps_to([3.0, 1.0], 2.5) == 2


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_budget_resolves_its_configs_without_training(name, budget):
    size = MODULES[name].BUDGETS[budget]
    configs = resolve_grid(MODULES[name].grid(size), budget_overrides(size, None))
    assert len(configs) == STUDIES[name][0]
    for cfg in configs.values():
        assert cfg.data.source == size.source and cfg.model.width == size.width
        # one thread on the 2-core CPU (two fought each other when the machine was shared); the GPU
        # budget leaves torch its default
        assert cfg.train.threads == (None if budget == "full" else 1)
    if budget != "smoke":
        assert {cfg.data.source for cfg in configs.values()} == {"fashion-mnist"}


def test_learning_rate_study_sets_up_the_seeds_figures():
    lr = {label: config.load(None, overrides).optim for label, overrides in
          learning_rate.grid(learning_rate.BUDGETS["small"])}
    # Fig. 1: four learning rates, in the seed's order of size
    assert lr["very-high-lr"].lr > lr["high-lr"].lr > lr["good-lr"].lr > lr["low-lr"].lr
    # Fig. 2: the batch size is the only difference, so the band's width is the batch's doing
    assert lr["batch-16"].lr == lr["batch-256"].lr
    assert (lr["batch-16"].batch_size, lr["batch-256"].batch_size) == (16, 256)
    # Fig. 3: the same small set and epochs, regularization the only difference (no augmentation:
    # its train accuracy, read on augmented batches, hid the gap)
    small = dict(learning_rate.grid(learning_rate.BUDGETS["small"]))
    unregularized = config.load(None, small["small-set-unregularized"])
    regularized = config.load(None, small["small-set-regularized"])
    assert unregularized.data.subset == regularized.data.subset == 2000
    assert unregularized.augment == regularized.augment and regularized.augment.policy == "none"
    assert (regularized.model.dropout, regularized.regularize.l2) == (0.5, 5e-4)
    assert (unregularized.model.dropout, unregularized.regularize.l2) == (0.0, 0.0)


def test_budget_overrides_leave_threads_to_torch_when_none():
    size = learning_rate.BUDGETS["full"]
    assert size.threads is None and not any(o.startswith("train.threads=") for o in budget_overrides(size, None))
    assert "train.threads=1" in budget_overrides(learning_rate.BUDGETS["small"], "digits")
