"""Each check on a run directory written by hand (the documented formats), faulty and healthy."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnntricks import config
from cnntricks.doctor import IDS, diagnose, format_findings
from cnntricks.doctor import checks, stats_checks


def write_run(path, losses=None, epochs=(), events=(), stats=(), classes=10, overrides=(), lr=0.1):
    """A run directory: history.jsonl from per-batch `losses` and epoch rows, stats.jsonl records."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = config.load(None, [f"optim.lr={lr}", *overrides])
    (path / "config.yaml").write_text(config.dump(cfg))
    (path / "data.json").write_text(json.dumps({"classes": [str(i) for i in range(classes)]}))
    losses = list(losses if losses is not None else healthy_losses())
    per_epoch = max(1, len(losses) // max(1, len(epochs) or 1))
    lines = [{"kind": "batch", "step": i + 1, "epoch": i // per_epoch + 1,
              "loss": None if not math.isfinite(v) else v, "lr": lr} for i, v in enumerate(losses)]
    for row in epochs:
        lines.append({"kind": "epoch", "lr": lr, **row})
    lines += [{"kind": "event", **e} for e in events]
    (path / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if stats:
        (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    return path


def healthy_losses(n=400, noise=0.05, seed=0, start=2.3, end=0.3):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    curve = end + (start - end) * np.exp(-t / (n / 6))
    return list(curve * (1 + noise * rng.standard_normal(n)))


def healthy_epochs(n=8):
    return [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.80 + 0.015 * e, "val_loss": 0.5 - 0.01 * e,
             "val_acc": 0.79 + 0.014 * e} for e in range(1, n + 1)]


def stat(step, layers=None, params=None, total=1.0, model_input=None):
    layers = layers if layers is not None else {
        f"stages.{i}.act": {"type": "ReLU", "mean": 0.5, "std": 0.8, "min": 0, "max": 4, "hist": [1] * 30,
                            "dead": 0.0, "units": 16} for i in range(3)}
    params = params if params is not None else {
        f"stages.{i}.0.weight": {"grad_norm": 0.3, "weight_norm": 5.0, "update_ratio": 3e-3, "unit_spread": 0.2}
        for i in range(3)}
    return {"step": step, "epoch": 1, "grad_norm_total": total,
            "input": model_input or {"mean": 0.01, "std": 1.0, "min": -1, "max": 2},
            "layers": layers, "params": params}


def ids(path, minimum="warning"):
    order = ("info", "warning", "error")
    return {f.id for f in diagnose(path) if order.index(f.severity) >= order.index(minimum)}


def test_a_healthy_run_has_no_finding_above_info(tmp_path):
    run = write_run(tmp_path / "run", epochs=healthy_epochs(), stats=[stat(s) for s in range(1, 401, 40)])
    assert ids(run) == set()
    assert "healthy" in format_findings(diagnose(run), "warning")


def test_every_finding_id_is_documented_and_stable():
    assert len(IDS) == 24 and "lr_diverged" in IDS and "at_chance" in IDS and "unnormalized_input" in IDS
    assert IDS[-2:] == ("unreadable", "unchecked")  # about the evidence itself (data_checks.py)


def test_nan_loss_is_nonfinite_and_lr_diverged_with_the_step(tmp_path):
    losses = healthy_losses(100)[:30] + [float("nan")]
    run = write_run(tmp_path / "run", losses=losses, events=[{"event": "nonfinite", "step": 31, "epoch": 1}])
    findings = {f.id: f for f in diagnose(run)}
    assert findings["nonfinite"].severity == "error" and findings["nonfinite"].step == 31
    assert findings["lr_diverged"].change == {"optim.lr": 0.01}


def test_nan_gradients_with_a_finite_loss_are_nonfinite_at_the_statistics_step(tmp_path):
    # the loss still finite, a gradient norm null (NaN) in stats.jsonl: found at that step (this path once raised)
    stats = [stat(s) for s in range(1, 401, 40)]
    stats[3]["grad_norm_total"] = None
    run = write_run(tmp_path / "run", epochs=healthy_epochs(), stats=stats)
    found = next(f for f in diagnose(run) if f.id == "nonfinite")
    assert found.step == stats[3]["step"] and found.epoch is not None and "stats.jsonl" in found.evidence


def test_a_rising_loss_is_divergence(tmp_path):
    losses = [2.3 * (1.02 ** i) for i in range(100)]
    assert "lr_diverged" in ids(write_run(tmp_path / "run", losses=losses))


def test_a_fast_first_drop_is_not_divergence(tmp_path):
    # like the healthy batch-256 run of the learning-rate study: the first steps far above the mean of the first 5%
    losses = list(0.3 + 1.7 * np.exp(-np.arange(468) / 4))
    assert "lr_diverged" not in ids(write_run(tmp_path / "run", losses=losses))


def test_tiny_updates_are_a_too_low_lr_even_when_the_loss_fell(tmp_path):
    losses = list(np.linspace(2.3, 1.1, 400))  # fell by half: not "slow" by the curve alone

    def run(name, ratio):
        records = [stat(s, params={f"stages.{i}.0.weight": {"grad_norm": 0.3, "weight_norm": 5.0,
                                                            "update_ratio": ratio, "unit_spread": 0.2}
                                   for i in range(3)}) for s in range(1, 401, 40)]
        return write_run(tmp_path / name, losses=losses, stats=records)
    assert "lr_too_low" in ids(run("tiny", 1.5e-5))  # LR 1e-4 on the study's MLP
    assert "lr_too_low" not in ids(run("small", 1e-4))  # under UPDATE_LOW, but the loss fell fast enough


def test_fast_drop_then_stuck_high_and_big_updates_is_lr_too_high(tmp_path):
    t = np.arange(400)
    losses = list(1.5 + 0.8 * np.exp(-t / 10) + 0.02 * np.random.default_rng(1).standard_normal(400))
    big = [stat(s, params={"w": {"grad_norm": 1, "weight_norm": 1, "update_ratio": 0.2, "unit_spread": 1}})
           for s in range(50, 401, 50)]
    run = write_run(tmp_path / "run", losses=losses, stats=big)
    assert "lr_too_high" in ids(run)


def test_slow_linear_decrease_is_lr_too_low(tmp_path):
    losses = list(np.linspace(2.3, 1.9, 400) + 0.01 * np.random.default_rng(2).standard_normal(400))
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", losses=losses))}
    assert found["lr_too_low"].change == {"optim.lr": 1.0}  # no statistics: x10


@pytest.mark.parametrize("ratio, lr", [(6e-5, 5.0), (1e-4, 3.0), (1e-6, 10.0)])
def test_a_too_low_lr_is_raised_by_how_far_the_updates_are_from_healthy(tmp_path, ratio, lr):
    """The update-to-weight ratio follows the LR (measured: 6e-5 at LR 0.001, 4.6e-3 at 0.1), so the
    change is UPDATE_GOOD / ratio, within 3-100x, and the advice names that factor."""
    losses = list(np.linspace(2.3, 2.2, 400))
    small = [stat(s, params={f"stages.{i}.0.weight": {"grad_norm": 0.3, "weight_norm": 5.0, "update_ratio": ratio,
                                                      "unit_spread": 0.2} for i in range(3)})
             for s in range(1, 401, 40)]
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", losses=losses, stats=small, lr=0.1))}
    assert found["lr_too_low"].change["optim.lr"] == pytest.approx(lr, rel=0.01)
    assert lr == pytest.approx(0.1 * min(max(checks.UPDATE_GOOD / ratio, 3), 100), rel=0.01)
    assert f"Raise the learning rate by {lr / 0.1:.0f}x, which brings the measured update ratio" \
        in found["lr_too_low"].advice


def test_a_wide_band_around_the_trend_is_batch_too_small(tmp_path):
    # batch 2: each loss is one or two images' loss, spread like an exponential around the trend
    rng = np.random.default_rng(3)
    noisy = [v * rng.exponential() / math.log(2) for v in healthy_losses(400, noise=0.0)]
    run = write_run(tmp_path / "run", losses=noisy, overrides=["optim.batch_size=2"])
    found = {f.id: f for f in diagnose(run)}
    assert "batch_too_small" in found and found["batch_too_small"].change == {"optim.batch_size": 16}
    assert "batch_too_small" not in ids(write_run(tmp_path / "ok", losses=healthy_losses(400, noise=0.1)))


def test_a_big_gap_is_overfitting_and_no_gap_at_low_accuracy_is_underfitting(tmp_path):
    over = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.7 + 0.05 * e, "val_loss": 0.5 + 0.05 * max(0, e - 3),
             "val_acc": 0.7} for e in range(1, 7)]
    found = {f.id: f for f in diagnose(write_run(tmp_path / "over", epochs=over))}
    assert found["overfitting"].figure == "accuracy.png"
    # four times the recipe's weight decay (no cropping policy, no dropout 0.5: README, the doctor)
    assert found["overfitting"].change == {"optim.weight_decay": 0.002} and found["overfitting"].severity == "warning"
    strong = {f.id: f for f in diagnose(write_run(tmp_path / "strong", epochs=over,
                                                  overrides=["optim.weight_decay=5e-3"]))}
    assert strong["overfitting"].severity == "info" and strong["overfitting"].change == {}  # nothing left to raise
    assert "already 0.005" in strong["overfitting"].advice
    under = [{"epoch": e, "train_loss": 1.5, "train_acc": 0.45, "val_loss": 1.5, "val_acc": 0.44} for e in range(1, 7)]
    found = {f.id: f for f in diagnose(write_run(tmp_path / "under", epochs=under))}
    assert found["underfitting"].severity == "warning"
    assert found["underfitting"].change == {"model.width": 32}  # twice the default width 16, depth 3 already
    tiny = write_run(tmp_path / "tiny", epochs=under, overrides=["model.width=2", "model.depth=1"])
    found = {f.id: f for f in diagnose(tiny)}  # a tiny model grows to at least the default one
    assert found["underfitting"].change == {"model.width": 16, "model.depth": 3}


def test_a_gap_while_validation_loss_still_falls_is_batch_norms_lag_not_overfitting(tmp_path):
    # resnet, 5 epochs (measured): a 16-point gap at epochs 2-3 while validation loss fell 1.34 -> 0.98
    lag = [{"epoch": e, "train_loss": 1.0, "train_acc": t, "val_loss": vl, "val_acc": v}
           for e, t, v, vl in [(1, 0.25, 0.31, 2.38), (2, 0.62, 0.46, 1.34), (3, 0.73, 0.59, 0.98)]]
    assert "overfitting" not in ids(write_run(tmp_path / "lag", epochs=lag))
    stalled = lag[:2] + [dict(lag[2], val_loss=1.30)]  # the same gap once validation loss stopped falling
    assert "overfitting" in ids(write_run(tmp_path / "stalled", epochs=stalled))


def test_validation_stuck_at_a_constant_lr_is_a_plateau_but_not_when_the_lr_decays(tmp_path):
    rows = [{"epoch": e, "train_loss": 0.3, "train_acc": 0.9, "val_loss": 0.35, "val_acc": min(0.85, 0.8 + 0.02 * e)}
            for e in range(1, 9)]
    assert "plateau" in ids(write_run(tmp_path / "flat", epochs=rows, overrides=["schedule.name=constant"]))
    # a decaying schedule (the default cosine) will act on it: the LR is still high only early on
    assert "plateau" not in ids(write_run(tmp_path / "cosine", epochs=rows))
    (tmp_path / "cosine" / "config.yaml").unlink()  # another loop's run: the LR column is all there is
    assert "plateau" in ids(tmp_path / "cosine")
    decayed = [dict(r, lr=0.1 / r["epoch"]) for r in rows]
    run = write_run(tmp_path / "decayed", epochs=[])
    with open(run / "history.jsonl", "a") as f:
        f.writelines(json.dumps({"kind": "epoch", **r}) + "\n" for r in decayed)
    assert "plateau" not in ids(run)


def test_dead_units_above_forty_percent_is_an_error(tmp_path):
    layers = {"stages.0.act": {"type": "ReLU", "mean": 0, "std": 0, "min": 0, "max": 0, "hist": [1] * 30,
                               "dead": 0.5, "units": 16}}
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", stats=[stat(1), stat(60, layers=layers)]))}
    assert found["dead_relu"].severity == "error" and found["dead_relu"].step == 60


def test_dead_units_explain_vanishing_gradients_and_a_diverged_lr_explains_dead_units(tmp_path):
    layers = {"stages.0.act": {"type": "ReLU", "mean": 0, "std": 0, "min": 0, "max": 0, "hist": [1] * 30,
                               "dead": 0.5, "units": 16}}
    vanishing = {f"stages.{i}.0.weight": {"grad_norm": 1e-6 if i == 0 else 0.3, "weight_norm": 5.0,
                                          "update_ratio": 3e-3, "unit_spread": 0.2} for i in range(3)}
    records = [stat(1), stat(60, layers=layers, params=vanishing)]
    found = {f.id: f for f in diagnose(write_run(tmp_path / "dead", stats=records))}
    assert found["dead_relu"].severity == "error" and found["vanishing_gradient"].severity == "info"
    diverged = write_run(tmp_path / "diverged", losses=healthy_losses()[:50] + [math.nan], stats=records,
                         events=[{"event": "nonfinite", "step": 51, "epoch": 1}])
    found = {f.id: f for f in diagnose(diverged)}
    assert found["lr_diverged"].severity == "error" and found["dead_relu"].severity == "info"


def test_saturated_tanh_and_vanishing_and_exploding_gradients(tmp_path):
    sat = {"a": {"type": "Tanh", "mean": 0, "std": 1, "min": -1, "max": 1, "hist": [1] * 30, "saturated": 0.8}}
    vanish = {f"l{i}.weight": {"grad_norm": 10.0 ** (i - 5), "weight_norm": 1, "update_ratio": 1e-3, "unit_spread": 1}
              for i in range(6)}
    run = write_run(tmp_path / "run", stats=[stat(1), stat(40, layers=sat, params=vanish)])
    assert {"saturation", "vanishing_gradient"} <= ids(run)
    explode = [stat(1), stat(40, total=1e5)]
    assert "exploding_gradient" in ids(write_run(tmp_path / "boom", stats=explode))


def test_initial_loss_far_from_ln_c_and_collapsing_activations_are_bad_init(tmp_path):
    assert "bad_init" in ids(write_run(tmp_path / "loss", losses=[9.0] + healthy_losses()[1:]))
    layers = {f"l{i}": {"type": "Tanh", "mean": 0, "std": 10.0 ** (-i), "min": 0, "max": 0, "hist": [1] * 30,
                        "saturated": 0.0} for i in range(5)}
    assert "bad_init" in ids(write_run(tmp_path / "depth", stats=[stat(1, layers=layers)]))


def test_zero_unit_spread_is_symmetric_init(tmp_path):
    same = {"stages.0.0.weight": {"grad_norm": 0, "weight_norm": 0, "update_ratio": None, "unit_spread": 0.0}}
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", stats=[stat(1, params=same)]))}
    assert found["symmetric_init"].severity == "error" and found["symmetric_init"].change == {"model.init": "auto"}


def test_raw_pixels_are_an_error_and_uncentred_inputs_a_warning(tmp_path):
    raw = {"mean": 73.0, "std": 90.0, "min": 0, "max": 255}
    found = {f.id: f for f in diagnose(write_run(tmp_path / "raw", stats=[stat(1, model_input=raw)]))}
    assert found["unnormalized_input"].severity == "error"
    unit = {"mean": 0.29, "std": 0.35, "min": 0, "max": 1}
    found = {f.id: f for f in diagnose(write_run(tmp_path / "unit", stats=[stat(1, model_input=unit)]))}
    assert found["unnormalized_input"].severity == "warning"


def test_noisy_filters_judged_on_large_kernels_only(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file
    rng = torch.Generator().manual_seed(0)
    run = write_run(tmp_path / "run")
    folder = run / "checkpoints" / "epoch-0001"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text('{"epoch": 1}')  # a checkpoint (rundir.latest_checkpoint): state and tensors
    save_file({"step": torch.zeros(1)}, str(folder / "state.safetensors"))
    (run / "checkpoints" / "latest").write_text("epoch-0001")
    noise = torch.randn(16, 3, 7, 7, generator=rng)
    save_file({"stem.weight": noise}, str(folder / "model.safetensors"))
    assert stats_checks.first_layer_smoothness(run) < 0.2
    assert "noisy_filters" in ids(run, "info")
    xs = torch.linspace(-1, 1, 7)
    smooth = torch.exp(-(xs.view(1, -1) ** 2 + xs.view(-1, 1) ** 2)).expand(16, 3, 7, 7) * torch.randn(16, 3, 1, 1, generator=rng)
    save_file({"stem.weight": smooth.contiguous()}, str(folder / "model.safetensors"))
    assert stats_checks.first_layer_smoothness(run) > 0.5 and "noisy_filters" not in ids(run, "info")
    save_file({"stem.weight": torch.randn(16, 3, 3, 3, generator=rng)}, str(folder / "model.safetensors"))
    assert stats_checks.first_layer_smoothness(run) is None  # 3x3: not judged


def test_a_run_from_another_loop_with_only_history_is_diagnosed(tmp_path):
    run = tmp_path / "other"
    run.mkdir()
    lines = [{"kind": "batch", "step": i + 1, "epoch": 1, "loss": v, "lr": 0.1} for i, v in
             enumerate([2.3 * (1.03 ** i) for i in range(80)])]
    (run / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    found = {f.id: f for f in diagnose(run)}
    assert "lr_diverged" in found and found["lr_diverged"].change == {"optim.lr": 0.01}


@pytest.mark.parametrize("bad", ["nope", "critical"])
def test_findings_refuse_unknown_ids_and_severities(bad):
    from cnntricks.doctor import Finding
    with pytest.raises(ValueError):
        Finding(id=bad if bad == "nope" else "plateau", severity="warning" if bad == "nope" else bad,
                title="t", evidence="e", explanation="x", advice="a")


@pytest.mark.parametrize("n", [0, 3, 5, 6, 101, 1234])
def test_the_trend_is_the_centred_rolling_median_with_shrinking_ends(n):
    from cnntricks.doctor.evidence import trend
    values = np.random.default_rng(n).standard_normal(n)
    half = max(5, n // 20) // 2
    expected = [np.median(values[max(0, i - half):i + half + 1]) for i in range(n)]
    assert np.array_equal(trend(values, chunk=50), np.array(expected))
