"""Fusion math (seed §8): each fusion against a hand computation, fitted only on what it is given."""
import math

import pytest
import torch

from cnntricks.ensemble.fusion import FUSIONS, Outputs, calibration_error, create_fusion, disagreement


def outputs(*logits, labels=None, features=None):
    logits = [torch.tensor(m, dtype=torch.float32) for m in logits]
    labels = torch.tensor(labels) if labels is not None else torch.zeros(len(logits[0]), dtype=torch.long)
    return Outputs(logits, labels, features)


def test_the_registered_fusions():
    assert FUSIONS.names() == ["features", "mean", "stack", "vote", "weighted"]


def test_mean_is_the_mean_of_the_probabilities():
    a, b = [[2.0, 0.0, -1.0]], [[0.0, 1.0, 0.0]]
    fused = create_fusion("mean").log_probs(outputs(a, b)).exp()
    expected = (torch.softmax(torch.tensor(a), 1) + torch.softmax(torch.tensor(b), 1)) / 2
    assert torch.allclose(fused, expected, atol=1e-6)


def test_vote_takes_the_majority_and_breaks_ties_by_the_mean_probability():
    # image 0: two of three vote class 1; image 1: a tie (0, 1) that the mean probability gives to class 0
    a = [[0.0, 3.0], [9.0, 0.0]]
    b = [[0.0, 1.0], [0.0, 1.0]]
    c = [[5.0, 0.0], [0.0, 0.0]]  # image 1: argmax 0 (a tie resolves to the first)
    fused = create_fusion("vote").log_probs(outputs(a, b, c))
    assert fused.argmax(1).tolist() == [1, 0]
    shares = fused.exp()
    assert torch.allclose(shares.sum(1), torch.ones(2), atol=1e-6)
    assert shares[0, 1] > 0.6  # about 2/3, mixed with a little of the mean probability
    majority = create_fusion("vote").log_probs(outputs([[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 9.0]], [[0.0, 9.0]],
                                                       [[9.0, 0.0]]))  # 4 of 5 vote 1, whatever the confidence
    assert majority.argmax(1).item() == 1


def test_weighted_fits_on_validation_and_favours_the_better_member():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    good = torch.nn.functional.one_hot(labels, 3).float() * 4  # right and confident
    bad = torch.randn(300, 3)
    fusion = create_fusion("weighted")
    fusion.fit(Outputs([good, bad], labels), None)
    assert fusion.fits_on == "validation" and fusion.weights[0] > 0.9
    assert float(fusion.weights.sum()) == pytest.approx(1.0)
    # the fitted weights minimize the validation NLL: no grid point does better
    def nll(w):
        p = w * torch.softmax(good.double(), 1) + (1 - w) * torch.softmax(bad.double(), 1)
        return float(-p[torch.arange(300), labels].log().mean())
    best = nll(float(fusion.weights[0]))
    assert all(best <= nll(w / 100) + 1e-9 for w in range(101))


def test_identical_members_fuse_to_the_member():
    torch.manual_seed(1)
    logits, labels = torch.randn(50, 4), torch.randint(0, 4, (50,))
    member = torch.log_softmax(logits, 1)
    for name in ("mean", "weighted"):
        fusion = create_fusion(name)
        fusion.fit(Outputs([logits, logits.clone()], labels), None)
        assert torch.allclose(fusion.log_probs(Outputs([logits, logits.clone()], labels)), member, atol=1e-5)
    weighted = create_fusion("weighted")
    weighted.fit(Outputs([logits, logits.clone(), logits.clone()], labels), None)
    assert torch.allclose(weighted.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    vote = create_fusion("vote").log_probs(Outputs([logits, logits.clone()], labels))
    assert torch.equal(vote.argmax(1), logits.argmax(1))


def test_stack_and_features_fit_a_linear_classifier_on_their_split_only():
    torch.manual_seed(2)
    labels = torch.randint(0, 3, (240,))
    informative = torch.nn.functional.one_hot(labels, 3).float() * 3 + 0.3 * torch.randn(240, 3)
    noise = torch.randn(240, 3)
    stack = create_fusion("stack")
    stack.fit(Outputs([noise, informative], labels), None)
    assert stack.fits_on == "validation" and tuple(stack.weight.shape) == (3, 6)
    assert float((stack.log_probs(Outputs([noise, informative], labels)).argmax(1) == labels).float().mean()) > 0.95
    features = create_fusion("features")
    train = Outputs([noise, informative], labels, features=[torch.randn(240, 5), informative])
    features.fit(None, train)
    assert features.fits_on == "training" and features.reads_features and tuple(features.weight.shape) == (3, 8)
    fused = features.log_probs(train)
    assert torch.allclose(fused.exp().sum(1), torch.ones(240), atol=1e-5)
    with pytest.raises(ValueError, match="features"):
        features.log_probs(Outputs([noise], labels))


def test_fitted_state_round_trips():
    torch.manual_seed(3)
    labels = torch.randint(0, 3, (60,))
    data = Outputs([torch.randn(60, 3), torch.randn(60, 3)], labels)
    for name in ("weighted", "stack"):
        fitted = create_fusion(name)
        fitted.fit(data, None)
        again = create_fusion(name)
        again.load(fitted.state())
        assert torch.allclose(again.log_probs(data), fitted.log_probs(data), atol=1e-5)


def test_calibration_error_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right), 0.95 (right)
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.95, 0.05]])
    labels = torch.tensor([0, 1, 1, 1, 0])
    # 15 bins: 0.9 in (0.8667, 0.9333] with 2 images (acc 0.5, conf 0.9); 0.95 alone; 0.6 and 0.55 in
    # (0.5333, 0.6]: acc 1, conf 0.575
    expected = 2 / 5 * abs(0.9 - 0.5) + 1 / 5 * abs(0.95 - 1) + 2 / 5 * abs(0.575 - 1)
    assert calibration_error(probabilities.double().log(), labels) == pytest.approx(expected, abs=1e-6)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert calibration_error(perfect.clamp_min(1e-30).log(), torch.tensor([0, 1])) == pytest.approx(0, abs=1e-9)


def test_disagreement_is_the_share_of_different_predictions():
    a = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    b = torch.tensor([[1.0, 0], [0, 1], [0, 1], [1, 0]])
    matrix = disagreement([a, b, a])
    assert matrix.tolist() == [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]]
    assert not math.isnan(matrix.sum())


def test_a_group_of_k_fold_members_is_their_mean_probability_and_its_fit_reads_one_output_per_group():
    from cnntricks.ensemble.fusion import group_mean
    torch.manual_seed(4)
    labels = torch.randint(0, 3, (40,))
    a, b, c = torch.randn(40, 3), torch.randn(40, 3), torch.randn(40, 3)
    grouped = group_mean(Outputs([a, b, c], labels), [0, 0, 1])
    expected = ((torch.softmax(a.double(), 1) + torch.softmax(b.double(), 1)) / 2).log()
    assert len(grouped.logits) == 2 and torch.allclose(grouped.logits[0].double(), expected, atol=1e-6)
    assert torch.allclose(torch.softmax(grouped.logits[1], 1), torch.softmax(c, 1), atol=1e-6)
    for name in ("weighted", "stack"):
        fusion = create_fusion(name)
        fusion.fit(Outputs([torch.randn(40, 3), torch.randn(40, 3)], labels), None)  # out of fold: one per group
        fusion.groups = [0, 0, 1]
        members = Outputs([a, b, c], labels)
        assert torch.allclose(fusion.log_probs(members), fusion.fused(grouped), atol=1e-6)
        again = create_fusion(name)
        again.load(fusion.state())
        assert again.groups == [0, 0, 1] and torch.allclose(again.log_probs(members), fusion.log_probs(members))
