"""imbalance.loss: each loss equals a hand computation on a small batch."""
import math

import pytest
import torch
import torch.nn.functional as F

from cnntricks.config import load
from cnntricks.train.losses import LOSSES, create_loss, effective_number_weights, ldam_margins

COUNTS = torch.tensor([100, 10, 1])
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-0.5, 1.0, 2.5]])
LABELS = torch.tensor([0, 1, 2])


def criterion(name, *overrides):
    return create_loss(load(None, [f"imbalance.loss={name}", "optim.label_smoothing=0", *overrides]), COUNTS)


def nll(row, label, offset=(0.0, 0.0, 0.0)):
    z = [v + o for v, o in zip(row.tolist(), offset)]
    return -(z[label] - math.log(sum(math.exp(v) for v in z)))


def test_the_registry_names_every_loss():
    assert LOSSES.names() == ["ce", "class_balanced", "focal", "ldam", "ldam_drw", "logit_adjusted"]


def test_ce_is_the_loops_cross_entropy_with_label_smoothing():
    loss = create_loss(load(None, []), COUNTS)(LOGITS, LABELS, 0.0)
    assert torch.equal(loss, F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1))


def test_class_balanced_weights_are_cui_et_als_effective_numbers():
    beta = 0.9
    raw = [(1 - beta) / (1 - beta ** n) for n in (100, 10, 1)]
    expected = [3 * w / sum(raw) for w in raw]
    assert effective_number_weights(COUNTS.double(), beta).tolist() == pytest.approx(expected, rel=1e-6)
    loss = criterion("class_balanced", "imbalance.beta=0.9")(LOGITS, LABELS, 0.0)
    hand = sum(w * nll(r, y) for w, r, y in zip(expected, LOGITS, LABELS.tolist())) / sum(expected)
    assert float(loss) == pytest.approx(hand, rel=1e-5)


def test_focal_loss_by_hand_and_gamma_zero_is_cross_entropy():
    loss = criterion("focal", "imbalance.gamma=2")(LOGITS, LABELS, 0.0)
    hand = 0.0
    for row, y in zip(LOGITS, LABELS.tolist()):
        p = math.exp(-nll(row, y))
        hand += -(1 - p) ** 2 * math.log(p)
    assert float(loss) == pytest.approx(hand / 3, rel=1e-5)
    zero = criterion("focal", "imbalance.gamma=0")(LOGITS, LABELS, 0.0)
    assert float(zero) == pytest.approx(float(F.cross_entropy(LOGITS, LABELS)), rel=1e-6)


def test_ldam_lowers_the_target_logit_by_a_margin_in_n_to_the_minus_quarter():
    margins = ldam_margins(COUNTS.double(), 0.5)
    expected = [0.5 * n ** -0.25 / 1 for n in (100, 10, 1)]  # the rarest class (1 image) has the largest margin
    assert margins.tolist() == pytest.approx(expected, rel=1e-6)
    loss = criterion("ldam")(LOGITS, LABELS, 0.0)
    hand = sum(nll(r, y, [-expected[y] if c == y else 0.0 for c in range(3)]) for r, y in zip(LOGITS, LABELS.tolist()))
    assert float(loss) == pytest.approx(hand / 3, rel=1e-5)


def test_ldam_drw_weighs_the_classes_only_after_drw_start():
    drw = criterion("ldam_drw", "imbalance.drw_start=0.8")
    plain = criterion("ldam")
    assert torch.equal(drw(LOGITS, LABELS, 0.5), plain(LOGITS, LABELS, 0.5))
    assert not torch.allclose(drw(LOGITS, LABELS, 0.8), plain(LOGITS, LABELS, 0.8))


def test_logit_adjusted_adds_tau_log_prior():
    prior = [n / 111 for n in (100, 10, 1)]
    loss = criterion("logit_adjusted", "imbalance.tau=1")(LOGITS, LABELS, 0.0)
    hand = sum(nll(r, y, [math.log(p) for p in prior]) for r, y in zip(LOGITS, LABELS.tolist())) / 3
    assert float(loss) == pytest.approx(hand, rel=1e-5)
    half = criterion("logit_adjusted", "imbalance.tau=0.5")(LOGITS, LABELS, 0.0)
    hand = sum(nll(r, y, [0.5 * math.log(p) for p in prior]) for r, y in zip(LOGITS, LABELS.tolist())) / 3
    assert float(half) == pytest.approx(hand, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "class_balanced", "focal", "ldam", "ldam_drw", "logit_adjusted"])
def test_every_loss_takes_mixups_soft_targets(name):
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [0.2, 0.0, 0.8]])
    loss = criterion(name)(LOGITS.requires_grad_(), soft, 0.9)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize("name", ["logit_adjusted", "ldam_drw"])
def test_a_long_tailed_run_trains_with_the_loss(tmp_path, name):
    from cnntricks.train.loop import fit
    cfg = load(None, ["data.source=synthetic", "model.width=4", "model.depth=1", "train.threads=1", "train.epochs=2",
                      "optim.batch_size=32", "data.imbalance=8", f"imbalance.loss={name}", "imbalance.drw_start=0.5",
                      f"data.cache_dir={tmp_path / 'cache'}"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    assert summary["stop_reason"] == "completed" and math.isfinite(summary["test_loss"])
