"""Rules that know the run they read: the working LR, short runs, runs at chance, runs from other loops."""
from __future__ import annotations

import json
import math

import numpy as np

from cnntricks import config
from cnntricks.doctor import diagnose
from cnntricks.doctor.checks import LR_RAISE, MIN_LOSSES, WORKING_LR, median_update_ratio
from cnntricks.doctor.evidence import load_evidence
from cnntricks.monitor.plugin import MIN_SAMPLES, sampling_interval


def cosine_lrs(steps: int, peak: float = 0.1, warmup: int = 10) -> list[float]:
    return [peak * (s + 1) / warmup if s < warmup else
            peak * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))) for s in range(steps)]


def write(path, losses, lrs=None, epochs=(), stats=(), classes=10, with_config=True):
    path.mkdir(parents=True)
    if with_config:
        (path / "config.yaml").write_text(config.dump(config.load(None, ["optim.lr=0.1"])))
    if classes:
        (path / "data.json").write_text(json.dumps({"classes": [str(i) for i in range(classes)]}))
    lrs = lrs or [0.1] * len(losses)
    per_epoch = max(1, len(losses) // max(1, len(epochs)))
    lines = [{"kind": "batch", "step": i + 1, "epoch": i // per_epoch + 1, "loss": loss, "lr": lr}
             for i, (loss, lr) in enumerate(zip(losses, lrs))]
    lines += [{"kind": "epoch", **row} for row in epochs]
    (path / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if stats:
        (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    return path


def record(step, ratio):
    return {"step": step, "epoch": 1, "grad_norm_total": 1.0, "layers": {},
            "params": {f"stages.{i}.0.weight": {"grad_norm": 0.3, "weight_norm": 5.0, "update_ratio": ratio,
                                                "unit_spread": 0.2} for i in range(3)}}


def test_a_short_run_is_sampled_over_all_of_it():
    assert sampling_interval(50, 55) == 5  # the digits run of the issue: steps 1 and 50 only, before
    assert sampling_interval(50, 10_000) == 50  # a long run keeps train.monitor's interval
    assert sampling_interval(50, 3) == 1
    assert 55 // sampling_interval(50, 55) >= MIN_SAMPLES


def test_update_ratios_are_judged_at_the_working_learning_rate(tmp_path):
    """The ratio follows the LR: tiny inside the warm-up and at the end of the decay, by design (digits,
    5 epochs: 2e-5 at step 1, 1e-2 at the peak, 1e-5 at the last step)."""
    steps = 50
    lrs = cosine_lrs(steps)
    losses = list(2.3 * np.exp(-np.arange(steps) / 12) + 0.1)
    stats = [record(s, 0.1 * lrs[s - 1]) for s in range(1, steps + 1, 5)] + [record(steps, 1e-5)]
    run = write(tmp_path / "run", losses, lrs, stats=stats)
    evidence = load_evidence(run)
    working = median_update_ratio(evidence)
    assert working >= 0.1 * WORKING_LR * 0.1  # only records at half the peak LR or more
    assert "lr_too_low" not in {f.id for f in diagnose(run)}


def test_a_too_low_learning_rate_is_raised_by_the_factor_the_advice_names(tmp_path):
    steps = 200
    losses = list(np.linspace(2.3, 2.2, steps))
    run = write(tmp_path / "run", losses, stats=[record(s, 1e-6) for s in range(1, steps + 1, 20)])
    found = {f.id: f for f in diagnose(run)}["lr_too_low"]
    assert found.change == {"optim.lr": 0.1 * LR_RAISE[1]} and "by 100x" in found.advice  # text and change agree


def test_too_few_steps_say_so_instead_of_guessing(tmp_path):
    epochs = [{"epoch": 1, "train_loss": 1.8, "train_acc": 0.6, "val_loss": 1.7, "val_acc": 0.62}]
    run = write(tmp_path / "run", [2.3, 2.0, 1.8, 1.7, 1.6], epochs=epochs)
    findings = {f.id: f for f in diagnose(run)}
    assert findings["unchecked"].severity == "info"
    assert f"not enough steps to judge the learning rate (5 loss values; the learning-rate checks need {MIN_LOSSES})" \
        in findings["unchecked"].evidence
    assert not {"lr_too_low", "lr_too_high"} & set(findings)


def test_a_run_at_chance_is_never_healthy(tmp_path):
    losses = list(2.303 + 0.02 * np.random.default_rng(0).standard_normal(300))  # a loss that does not move
    epochs = [{"epoch": e, "train_loss": 2.3, "train_acc": 0.1, "val_loss": 2.3, "val_acc": 0.08} for e in (1, 2, 3)]
    found = {f.id: f for f in diagnose(write(tmp_path / "run", losses, epochs=epochs))}
    assert found["at_chance"].severity == "error"
    assert "validation accuracy 8.0% after 3 epochs; chance is 10.0% (10 classes, data.json)" in found["at_chance"].evidence
    assert found["at_chance"].change  # something to try


def test_a_plain_loop_at_chance_is_flagged_with_the_classes_from_its_loss(tmp_path):
    """The issue's plain PyTorch loop: loss 2.31 -> 2.30 in 4 epochs at 8% accuracy, no config, no data.json:
    a run that learned nothing, whose loss settled at ln C."""
    losses = list(np.linspace(2.31, 2.30, 400))
    epochs = [{"epoch": e, "train_loss": 2.3, "train_acc": 0.08, "val_acc": 0.08} for e in (1, 2, 3, 4)]
    run = write(tmp_path / "run", losses, epochs=epochs, classes=0, with_config=False)
    found = {f.id: f for f in diagnose(run)}
    assert found["lr_too_low"].severity == "warning"  # the cause leads; at chance is its consequence
    assert found["at_chance"].title.endswith("(likely a consequence of lr_too_low)")
    assert "(10 classes, inferred from the loss it settled at, 2.3 ≈ ln C)" in found["at_chance"].evidence
    assert load_evidence(run).classes is None  # bad_init still compares only with a named class count


def epoch_rows(val, train):
    return [{"epoch": e, "train_loss": 1.0, "train_acc": t, "val_loss": 1.0, "val_acc": v}
            for e, (v, t) in enumerate(zip(val, train), 1)]


def test_a_validation_accuracy_still_rising_at_the_end_says_train_longer(tmp_path):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    run = write(tmp_path / "run", losses, epochs=epoch_rows([0.40, 0.62, 0.65, 0.71], [0.55, 0.60, 0.61, 0.64]))
    (run / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=4"])))
    found = {f.id: f for f in diagnose(run)}["too_short"]
    assert found.change == {"train.epochs": 8}  # twice the planned 4
    assert "rose to 71.0% in the last epoch (4), +6.0% over the best before it" in found.evidence
    flat = write(tmp_path / "flat", losses, epochs=epoch_rows([0.80, 0.85, 0.86, 0.87], [0.85, 0.88, 0.89, 0.90]))
    assert "too_short" not in {f.id for f in diagnose(flat)}  # +1 point: converging


def test_a_training_set_held_far_below_validation_is_over_regularized(tmp_path):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    run = write(tmp_path / "run", losses, epochs=epoch_rows([0.70, 0.75, 0.76], [0.60, 0.64, 0.65]))
    (run / "config.yaml").write_text(config.dump(config.load(None, ["augment.policy=standard", "train.epochs=3"])))
    found = {f.id: f for f in diagnose(run)}["over_regularized"]
    assert found.change == {"augment.policy": "flip"} and "11.0% below it" in found.evidence


def test_a_run_still_training_is_not_too_short(tmp_path):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    run = write(tmp_path / "run", losses, epochs=epoch_rows([0.40, 0.62, 0.65, 0.71], [0.55, 0.60, 0.61, 0.64]))
    (run / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5"])))  # epoch 4 of 5
    assert "too_short" not in {f.id for f in diagnose(run)}
    (run / "summary.json").write_text(json.dumps({"epochs": 4, "stop_reason": "target_accuracy"}))
    assert "too_short" in {f.id for f in diagnose(run)}  # it ended there


def test_a_decayed_run_still_learning_is_too_short_not_too_small(tmp_path):
    """A cosine run's last epoch at LR ~0 leaves validation flat (49% -> 60% -> 60%) while training accuracy
    rose 9 points in 2 epochs: the cure is more epochs, not a wider model."""
    losses = list(1.8 * np.exp(-np.arange(75) / 40) + 0.8)
    rows = epoch_rows([0.216, 0.388, 0.489, 0.599, 0.599], [0.349, 0.399, 0.501, 0.557, 0.591])
    run = write(tmp_path / "run", losses, epochs=rows, classes=6)
    (run / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5"])))
    found = {f.id: f for f in diagnose(run)}
    assert found["too_short"].change == {"train.epochs": 10}
    assert "training accuracy rose by 9.0% over the last 2 epochs, to 59.1%" in found["too_short"].evidence
    assert found.get("underfitting") is None or found["underfitting"].severity == "info"  # too_short explains it


def test_validation_ahead_of_training_mid_run_is_not_over_regularization(tmp_path):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    run = write(tmp_path / "run", losses, epochs=epoch_rows([0.70, 0.75, 0.76], [0.60, 0.64, 0.65]))
    (run / "config.yaml").write_text(config.dump(config.load(None, ["augment.policy=standard", "train.epochs=10"])))
    assert "over_regularized" not in {f.id for f in diagnose(run)}  # epoch 3 of 10: the live doctor's view


def test_training_accuracy_still_rising_at_an_undecayed_lr_is_too_short(tmp_path):
    """At a constant LR nothing anneals at the end: 5 points of training accuracy in 2 epochs is a run stopped
    while learning (Fashion-MNIST, fastnet, LR 0.01 constant, 5 epochs: twice the epochs added 3 points);
    after a decay the same rise is the annealing's, under STILL_LEARNING."""
    losses = list(2.3 * np.exp(-np.arange(300) / 100) + 0.5)
    rows = epoch_rows([0.70, 0.75, 0.755, 0.76, 0.765], [0.69, 0.72, 0.74, 0.76, 0.79])
    constant = write(tmp_path / "constant", losses, epochs=rows)
    (constant / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5"])))
    found = {f.id: f for f in diagnose(constant)}["too_short"]
    assert "rose by 5.0% over the last 2 epochs, to 79.0% at an undecayed learning rate" in found.evidence
    decayed = write(tmp_path / "decayed", losses, cosine_lrs(300), epochs=rows)
    (decayed / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5"])))
    assert "too_short" not in {f.id for f in diagnose(decayed)}


def test_steps_at_the_low_end_of_healthy_with_a_slow_loss_raise_the_lr(tmp_path):
    """Update ratios of 2e-3 (healthy ~1e-3..1e-2) with a loss that fell by 40%: LR x3 added 4-7 points on
    RGB icons and Fashion-MNIST at LR 0.01. The same steps with a loss that fell by 60% are healthy."""
    steps = 400
    for name, floor, fires in (("slow", 1.38, True), ("fast", 0.9, False)):
        losses = list(floor + (2.3 - floor) * np.exp(-np.arange(steps) / 80))
        run = write(tmp_path / name, losses, stats=[record(s, 2e-3) for s in range(1, steps + 1, 20)])
        assert "lr_too_low" not in {f.id for f in diagnose(run)}  # mid-run (the live doctor): not judged yet
        (run / "summary.json").write_text(json.dumps({"epochs": 12}))
        found = {f.id: f for f in diagnose(run)}
        assert ("lr_too_low" in found) is fires
        if fires:
            assert found["lr_too_low"].change == {"optim.lr": 0.3} and "by 3x" in found["lr_too_low"].advice
            assert "the loss fell by only 37%" in found["lr_too_low"].evidence


def test_over_regularization_is_judged_from_five_points(tmp_path):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    for name, train, fires in (("five", 0.70, True), ("two", 0.73, False)):
        run = write(tmp_path / name, losses, epochs=epoch_rows([0.70, 0.74, 0.755], [0.60, 0.68, train - 0.005]))
        (run / "config.yaml").write_text(config.dump(config.load(None, ["augment.policy=standard", "train.epochs=3"])))
        assert ("over_regularized" in {f.id for f in diagnose(run)}) is fires


def imbalanced_run(path, counts, recalls, overrides=(), val=(0.70, 0.75, 0.76), train=(0.70, 0.75, 0.76)):
    losses = list(2.3 * np.exp(-np.arange(200) / 60) + 0.3)
    run = write(path, losses, epochs=epoch_rows(list(val), list(train)), classes=len(counts))
    (run / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=3", *overrides])))
    data = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(json.dumps({**data, "train_counts": counts}))
    per_class = [{"class": c, "count": 100, "acc": r} for c, r in enumerate(recalls)]
    (run / "summary.json").write_text(json.dumps({"test_acc": 0.8, "test_balanced_acc": float(np.mean(recalls)),
                                                  "per_class": per_class, "epochs": 3}))
    return run


def test_a_long_tail_whose_rare_classes_pay_is_class_imbalance(tmp_path):
    counts = [5400, 3237, 1940, 1163, 697, 418, 250, 150, 90, 54]  # data.imbalance=100
    recalls = [0.95, 0.95, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]
    found = {f.id: f for f in diagnose(imbalanced_run(tmp_path / "lt", counts, recalls))}["class_imbalance"]
    assert found.severity == "warning" and found.change == {"imbalance.loss": "logit_adjusted"}
    assert "from 5400 to 54 (100x); test recall 58.0% on the classes under the median count against 92.0%" \
        in found.evidence
    remedied = imbalanced_run(tmp_path / "remedied", counts, recalls, ["imbalance.loss=logit_adjusted"])
    found = {f.id: f for f in diagnose(remedied)}["class_imbalance"]  # a remedy that leaves the gap: still a warning
    assert found.severity == "warning" and found.change == {"imbalance.sampler": "class_balanced"}
    assert "a remedy is on" in found.evidence
    even = imbalanced_run(tmp_path / "even", counts, [0.9] * 10, ["imbalance.loss=logit_adjusted"])
    assert {f.id: f for f in diagnose(even)}["class_imbalance"].severity == "info"  # the remedy closed the gap


def test_a_balanced_run_or_a_mild_skew_is_not_class_imbalance(tmp_path):
    recalls = [0.95, 0.95, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]
    for name, counts in (("balanced", [500] * 10), ("mild", [500] * 5 + [60] * 5)):
        assert "class_imbalance" not in {f.id for f in diagnose(imbalanced_run(tmp_path / name, counts, recalls))}
    no_summary = imbalanced_run(tmp_path / "running", [5000] + [50] * 9, recalls)
    (no_summary / "summary.json").unlink()
    assert "class_imbalance" not in {f.id for f in diagnose(no_summary)}  # judged when the run has its test figures


def test_the_gap_of_a_long_tailed_run_is_the_imbalance_not_overfitting(tmp_path):
    counts = [5400, 3237, 1940, 1163, 697, 418, 250, 150, 90, 54]
    recalls = [0.95, 0.95, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]
    run = imbalanced_run(tmp_path / "lt", counts, recalls, val=(0.60, 0.60, 0.60), train=(0.74, 0.75, 0.76))
    found = {f.id: f for f in diagnose(run)}
    assert found["class_imbalance"].severity == "warning"
    assert found["overfitting"].severity == "info" and "consequence of class_imbalance" in found["overfitting"].title


def test_a_gap_in_a_run_stopped_while_learning_is_too_short_first(tmp_path):
    """The calibration half's run (ResNet, Fashion-MNIST, 10 step-decayed epochs): train 66% against validation
    46%, training accuracy still up 10 points in 2 epochs; regularizing lost 9 to 33 points, twice the epochs added 10."""
    losses = list(2.3 * np.exp(-np.arange(300) / 150) + 0.5)
    rows = epoch_rows([0.30, 0.24, 0.33, 0.48, 0.46], [0.45, 0.52, 0.56, 0.63, 0.66])
    run = write(tmp_path / "run", losses, epochs=rows)
    (run / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5", "optim.weight_decay=5e-3"])))
    found = {f.id: f for f in diagnose(run)}
    assert found["too_short"].severity == "warning"
    assert found["overfitting"].severity == "info"  # 5e-3 is above the 4e-3 cap already: nothing left to raise
    assert found["overfitting"].change == {}
    weaker = write(tmp_path / "weaker", losses, epochs=rows)
    (weaker / "config.yaml").write_text(config.dump(config.load(None, ["train.epochs=5", "optim.weight_decay=5e-4"])))
    found = {f.id: f for f in diagnose(weaker)}
    assert found["too_short"].severity == "warning"
    assert found["overfitting"].severity == "info" and "consequence of too_short" in found["overfitting"].title
