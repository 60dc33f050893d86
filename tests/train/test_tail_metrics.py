"""Metrics that do not hide the rare classes: balanced accuracy, macro F1, per-class precision and F1
(checked against scikit-learn) and many/medium/few-shot accuracy by training count."""
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score

from cnntricks.train.inference import metrics, shot_accuracy


def one_hot_logits(predictions, classes):
    return torch.nn.functional.one_hot(torch.as_tensor(predictions), classes).float() * 5


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_and_macro_f1_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=300, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    predictions = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 6, 300))  # class 5 only predicted
    result = metrics(one_hot_logits(predictions, 6), torch.as_tensor(labels), 6)
    assert np.isclose(result["balanced_acc"], balanced_accuracy_score(labels, predictions))
    assert np.isclose(result["macro_f1"], f1_score(labels, predictions, average="macro"))
    present = [0, 1, 2, 3, 4]
    recalls = recall_score(labels, predictions, labels=present, average=None)
    precisions = precision_score(labels, predictions, labels=present, average=None, zero_division=0)
    assert np.allclose([r["acc"] for r in result["per_class"][:5]], recalls)
    assert np.allclose([r["precision"] for r in result["per_class"][:5]], precisions)
    assert result["per_class"][5] == {"class": 5, "count": 0, "acc": None, "precision": 0.0, "f1": 0.0}


def test_accuracy_hides_a_class_that_balanced_accuracy_shows():
    labels = torch.tensor([0] * 90 + [1] * 10)
    result = metrics(one_hot_logits([0] * 100, 2), labels, 2)  # always the common class
    assert result["acc"] == pytest.approx(0.9) and result["balanced_acc"] == 0.5
    assert result["per_class"][1] == {"class": 1, "count": 10, "acc": 0.0, "precision": None, "f1": 0.0}


def test_shot_groups_follow_the_training_counts():
    per_class = [{"acc": a} for a in (0.9, 0.8, 0.6, 0.5, 0.1)]
    shots = shot_accuracy(per_class, [5000, 101, 100, 20, 19])  # many > 100, few < 20
    assert shots == pytest.approx({"many": 0.85, "medium": 0.55, "few": 0.1})
    assert shot_accuracy(per_class[:2], [500, 400]) == {"many": pytest.approx(0.85), "medium": None, "few": None}
