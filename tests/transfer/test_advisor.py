"""transfer.strategy=auto: the seed's 2x2 table from measured size and similarity."""
from __future__ import annotations

import json

import pytest

from cnntricks import config
from cnntricks.transfer.advisor import BIG_PER_CLASS, SIMILAR_MARGIN, Advice, decide

SOURCE = ["data.source=synthetic", "model.width=8", "model.depth=3", "train.epochs=1", "optim.batch_size=32",
          "train.threads=1", "--quiet"]


@pytest.mark.parametrize("per_class, probes, expected, seed_says", [
    (20, [0.5, 0.7, 0.9], (True, False, "top"), "linear"),  # the top stage is best: similar; few images
    (BIG_PER_CLASS, [0.5, 0.7, 0.9], (True, True, "top"), "top"),
    (20, [0.6, 0.8, 0.7], (False, False, "top"), "linear@stage1"),  # an earlier stage clearly better: different
    (5000, [0.6, 0.8, 0.7], (False, True, "all"), "all"),
    (20, [0.6, 0.8, 0.8 - SIMILAR_MARGIN], (True, False, "top"), "linear"),  # within the margin: still similar
])
def test_the_cell_and_the_strategy_follow_the_table(per_class, probes, expected, seed_says):
    assert decide(per_class, probes) == expected
    assert Advice(per_class, probes, *expected).seed_says == seed_says


def test_the_advice_says_its_numbers_and_why():
    advice = Advice(20.0, [0.6, 0.8, 0.7], False, False, "top")
    text = advice.reason()
    assert "20 images per class" in text and "stage 1" in text and "0.800" in text and "different, small" in text
    assert "the seed says linear@stage1; measured better: top" in text
    cfg = advice.apply(config.Config())
    assert cfg.transfer.strategy == "top"
    assert advice.to_dict()["cell"] == "different, small"


def test_auto_measures_before_training_and_keeps_its_choice(user, source):
    result = user.run("train", *SOURCE[:-1], "model.pretrained=source", "transfer.strategy=auto", "--run-dir", "t")
    assert result.code == 0, result
    assert "transfer.strategy=auto:" in result.out and "images per class" in result.out
    advice = json.loads((user.cwd / "t" / "transfer.json").read_text())
    assert advice["strategy"] in ("top", "all", "scratch")  # the table's, or scratch after the race
    assert len(advice["probe_acc"]) == 3 and advice["cell"] in advice["reason"]
    race = advice["race"]
    assert set(race["accuracy"]) == {advice["table"], "scratch"} and race["trained"] + race["scored"] == 461
    assert advice["strategy"] == max(race["accuracy"], key=race["accuracy"].get)
    assert "racing scratch on 307 training images" in result.out and "race on the training split" in result.out
    assert config.load(user.cwd / "t" / "config.yaml").transfer.strategy == advice["strategy"]  # a resume needs no advice
    summary = json.loads((user.cwd / "t" / "summary.json").read_text())
    assert summary["transfer"]["advice"]["strategy"] == advice["strategy"]
    html = (user.cwd / "t" / "report" / "index.html").read_text()
    assert "advisor (transfer.strategy=auto)" in html and advice["cell"] in html


def test_a_tie_names_the_higher_stage():
    advice = Advice(20.0, [0.6, 0.818, 0.818], True, False, "top")
    assert advice.best_stage == 2 and "best 0.818 at stage 2" in advice.reason()


def test_the_race_picks_the_better_and_the_table_on_a_tie():
    advice = Advice(20.0, [0.6, 0.8, 0.7], False, False, "top", seconds=1.0)
    lost = advice.raced({"top": 0.80, "scratch": 0.90}, 40, 20, 5.0)
    assert (lost.strategy, lost.table, lost.seconds) == ("scratch", "top", 6.0)
    assert "race on the training split (40 images trained, 20 held out): top 0.800, scratch 0.900 -> " \
           "transfer.strategy=scratch" in lost.reason()
    assert "cell 'different, small' -> transfer.strategy=top" in lost.reason()
    assert advice.raced({"top": 0.85, "scratch": 0.85}, 40, 20, 5.0).strategy == "top"


def test_without_the_race_the_table_decides(user, source):
    result = user.run("train", *SOURCE[:-1], "model.pretrained=source", "transfer.strategy=auto",
                      "transfer.race=false", "--run-dir", "t")
    assert result.code == 0, result
    advice = json.loads((user.cwd / "t" / "transfer.json").read_text())
    assert advice["race"] is None and advice["strategy"] in ("top", "all") and "racing" not in result.out


def test_after_the_race_the_run_is_the_one_given_the_winner_by_hand(tmp_path, trained_source):
    """The race leaves the random state as it found it: auto's run equals the same run with the winner named."""
    import warnings

    from cnntricks.session import train
    overrides = [o for o in SOURCE if "=" in o] + [f"model.pretrained={trained_source}", "doctor.mode=off"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = train(config.load(None, overrides + ["transfer.strategy=auto"]), tmp_path / "auto", progress=False,
                     report=False)
        winner = json.loads((tmp_path / "auto" / "transfer.json").read_text())["strategy"]
        by_hand = train(config.load(None, overrides + [f"transfer.strategy={winner}"]), tmp_path / "hand",
                        progress=False, report=False)
    assert (auto["test_acc"], auto["test_loss"], auto["val_acc"]) == (by_hand["test_acc"], by_hand["test_loss"], by_hand["val_acc"])


def test_a_stopped_race_names_no_checkpoint_in_its_temporary_folder(monkeypatch):
    import signal

    import torch

    from cnntricks.data.store import Splits, Store
    from cnntricks.train import loop
    from cnntricks.train.interrupt import Interrupted
    from cnntricks.train.race import race

    def stopped(cfg, run_dir, **kwargs):
        raise Interrupted(signal.SIGTERM, run_dir / "checkpoints" / "step-3")
    monkeypatch.setattr(loop, "fit", stopped)
    store = Store(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1] * 3), ["a", "b"])
    with pytest.raises(Interrupted) as stop:
        race(config.Config(), Splits(store, store, store, "synthetic"), Advice(3.0, [0.5], True, False, "top"))
    assert stop.value.checkpoint is None and stop.value.exit_code == 143
