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
    assert advice["strategy"] in ("linear", "top", "all") or advice["strategy"].startswith("linear@stage")
    assert len(advice["probe_acc"]) == 3 and advice["cell"] in advice["reason"]
    assert config.load(user.cwd / "t" / "config.yaml").transfer.strategy == advice["strategy"]  # a resume needs no advice
    summary = json.loads((user.cwd / "t" / "summary.json").read_text())
    assert summary["transfer"]["advice"]["strategy"] == advice["strategy"]
    html = (user.cwd / "t" / "report" / "index.html").read_text()
    assert "advisor (transfer.strategy=auto)" in html and advice["cell"] in html


def test_a_tie_names_the_higher_stage():
    advice = Advice(20.0, [0.6, 0.818, 0.818], True, False, "top")
    assert advice.best_stage == 2 and "best 0.818 at stage 2" in advice.reason()
