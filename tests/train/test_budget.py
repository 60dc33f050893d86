"""train.time_budget (the schedule planned to end with the budget, from the measured speed) and the default's
plan on small data (train.epochs unset: at least train.min_steps steps, the warm-up kept at its share)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from cnntricks import config
from cnntricks.config import ConfigError
from cnntricks.rundir import read_history, read_json, split_history
from cnntricks.train.budget import (DEFAULT_EPOCHS, RECIPES, TimeBudget, planned_epochs, recipe_for,
                                    steps_within)
from cnntricks.train.loop import Trainer, fit
from cnntricks.train.schedule import Schedule

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1", "optim.batch_size=32",
         "doctor.mode=off", "train.monitor=off"]


def test_steps_within_is_the_largest_total_whose_steps_and_epoch_ends_fit_the_budget():
    # 10 s used after 20 steps (2 epochs ended); 0.1 s a step, 1 s an epoch's end, a 30 s budget: N = 120 costs
    # 10 + 100 x 0.1 + (12 - 2) x 1 = 30; N = 121 costs 10 + 10.1 + 11 = 31.1
    assert steps_within(30, 10, 20, 0.1, 1.0, 10) == 120
    # no epoch end: the steps alone
    assert steps_within(30, 0, 0, 0.1, 0.0, 10) == 300
    # a spent budget still takes the next step (the schedule ends there)
    assert steps_within(30, 31, 20, 0.1, 1.0, 10) == 21


def seconds_of(total, elapsed, step, per_step, end, per_epoch):
    return elapsed + (total - step) * per_step + (math.ceil(total / per_epoch) - step // per_epoch) * end


@pytest.mark.parametrize("budget,elapsed,step,per_step,end,per_epoch",
                         [(300, 1.3, 12, 0.05, 2.5, 421), (60, 0.4, 3, 0.21, 0.0, 7), (5, 0.2, 2, 0.003, 0.3, 17)])
def test_steps_within_agrees_with_counting_the_seconds(budget, elapsed, step, per_step, end, per_epoch):
    total = steps_within(budget, elapsed, step, per_step, end, per_epoch)
    assert seconds_of(total, elapsed, step, per_step, end, per_epoch) <= budget
    assert seconds_of(total + 1, elapsed, step, per_step, end, per_epoch) > budget


def test_train_epochs_unset_plans_12_epochs_or_min_steps_on_a_small_split_with_the_warmup_share_kept():
    cfg = config.load(None, [])
    assert cfg.train.epochs is None and cfg.train.min_steps == 1000 and DEFAULT_EPOCHS == 12
    assert planned_epochs(cfg, {"train_counts": [5400] * 10}) == (12, 1.0, None)  # Fashion-MNIST: 421 steps an epoch
    epochs, warmup, notice = planned_epochs(cfg, {"train_counts": [300] * 6})  # 1,800 images: 14 steps an epoch
    assert epochs == math.ceil(1000 / 14) == 72 and warmup == pytest.approx(72 / 12)
    assert "planned 72 epochs" in notice and "train.min_steps=1000" in notice
    explicit = config.load(None, ["train.epochs=5"])
    assert planned_epochs(explicit, {"train_counts": [300] * 6}) == (5, 1.0, None)  # as the user set it
    assert planned_epochs(config.load(None, ["train.min_steps=0"]), {"train_counts": [300] * 6})[0] == 12
    assert planned_epochs(cfg, None)[0] == 12  # before the data is read


def test_a_small_split_trains_at_least_min_steps_steps_and_config_yaml_says_how_many_epochs(tmp_path):
    # 460 training images, batches of 32: 14 steps an epoch, 168 in 12 epochs; 200 steps need 15 epochs
    summary = fit(config.load(None, [*SMALL, "train.min_steps=200"]), tmp_path / "run", progress=False)
    assert summary["epochs"] == 15 and summary["steps"] == 210
    saved = config.load(tmp_path / "run" / "config.yaml")
    assert saved.train.epochs == 15 and saved.schedule.warmup_epochs == pytest.approx(15 / 12)


def test_schedule_plan_stretches_the_schedule_to_its_new_end_with_the_warmup_given():
    schedule = Schedule(config.ScheduleConfig(name="cosine", warmup_epochs=1), 0.1, 120, 10)
    schedule.plan(50, 5)
    assert schedule.lr(0) == pytest.approx(0.1 / 5) and schedule.lr(4) == pytest.approx(0.1)
    assert schedule.lr(49) < 0.001 and schedule.total_steps == 50


def test_a_time_budget_run_ends_near_the_budget_with_its_schedule_finished(tmp_path):
    budget = 6.0
    run = tmp_path / "run"
    summary = fit(config.load(None, [*SMALL, f"train.time_budget={budget}"]), run, progress=False)
    records = read_history(run)
    batches, _ = split_history(records)
    events = [r for r in records if r.get("kind") == "event"]
    plans = [e for e in events if e["event"] == "planned"]
    assert 1 <= len(plans) <= 3 and "the schedule ending with the budget" in plans[0]["message"]
    assert summary["time_budget"] == budget and summary["steps"] == batches[-1]["step"]
    # the last step is the schedule's last: its LR is the cosine's end, not the middle of the decay
    assert batches[-1]["lr"] < 0.01 * max(b["lr"] for b in batches)
    # on time (loop_seconds: steps, validation, checkpoints), within a tolerance for a shared CI machine; the
    # benchmark (benchmarks/frontier.py) measures how close budgets are met
    assert budget * 0.6 < summary["loop_seconds"] < budget * 1.4
    assert read_json(run / "checkpoints" / f"epoch-{summary['epochs']:04d}" / "state.json")["trainer"]["plan"] \
        == {"steps": summary["steps"], "warmup_steps": pytest.approx(summary["steps"] / 12)}
    assert config.load(run / "config.yaml").train.epochs == summary["epochs"]
    resumed = Trainer(config.load(run / "config.yaml"), run, resume=True, progress=False)
    resumed.start()  # a resumed budget run keeps the plan its checkpoint holds, and makes no other
    assert resumed.schedule.total_steps == summary["steps"]
    budget_plugin = next(p for p in resumed.plugins if isinstance(p, TimeBudget))
    assert budget_plugin.plans == budget_plugin.last_plan


def test_a_time_budget_refuses_what_lays_its_epochs_out_itself():
    from cnntricks.train.resolve import resolve
    for extra in (["schedule.name=snapshot", "train.epochs=10"], ["imbalance.two_stage=true", "train.epochs=4"]):
        with pytest.raises(ConfigError, match="train.time_budget plans one schedule"):
            resolve(config.load(None, ["train.time_budget=60", *extra]))
    with pytest.raises(ConfigError, match="train.time_budget"):
        config.load(None, ["train.time_budget=0"])


@pytest.mark.parametrize("budget,name", [(5, "budget-1min"), (60, "budget-1min"), (299, "budget-1min"),
                                         (300, "budget-5min"), (899, "budget-5min"), (900, "budget-15min"),
                                         (7200, "budget-15min")])
def test_a_budget_trains_the_recipe_of_the_largest_budget_not_above_it(budget, name):
    assert recipe_for(budget)[0] == name


@pytest.mark.parametrize("floor,name,keys", RECIPES)
def test_each_budget_recipe_file_is_the_recipe_time_budget_picks(floor, name, keys):
    budget = {"budget-1min": 60}.get(name, floor)
    written = config.load(ROOT / "configs" / f"{name}.yaml")
    assert written.train.time_budget == budget
    assert written == config.load(None, [*keys, f"train.time_budget={budget:g}", f"train.name={name}"])


def test_train_with_a_time_budget_alone_picks_its_recipe_and_the_command_line_still_wins(user):
    # 900 s picks budget-15min (width 48, flips and crops); model.width=8 from the command line wins over the
    # recipe's width; the run stops at its first epoch's end (train.target_accuracy), long before the budget
    result = user.run("train", *SMALL, "train.time_budget=900", "train.target_accuracy=0.01", "--run-dir", "run",
                      "--quiet")
    assert result.code == 0, result.err
    assert "train.time_budget=900 s: the budget-15min recipe (model.width=48, augment.policy=standard" in result.err
    written = config.load(user.cwd / "run" / "config.yaml")
    assert (written.model.width, written.augment.policy, written.train.name) == (8, "standard", "budget-15min")
    (user.cwd / "mine.yaml").write_text("train:\n  time_budget: 900\n  target_accuracy: 0.01\n")
    given = user.run("train", "mine.yaml", *SMALL, "--run-dir", "mine", "--quiet")
    assert given.code == 0, given.err
    assert "recipe" not in given.err  # a config file is its own recipe
    assert config.load(user.cwd / "mine" / "config.yaml").augment.policy == "flip"
