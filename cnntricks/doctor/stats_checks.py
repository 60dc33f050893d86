"""The checks that read the monitor's statistics (stats.jsonl) and the last checkpoint's weights:
what a loss curve cannot show (seed §3, §5, §7): dead ReLUs, saturated units, vanishing and
exploding gradients, a bad or symmetric initialization, unnormalized inputs, noisy filters.
Thresholds and helpers: checks.py."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from cnntricks.doctor.checks import (CENTER, DEAD_ERROR, DEAD_INFO, DEPTH_COLLAPSE, DEPTH_EXPLODE, EXPLODE_NORM, EXPLODE_RATIO,
                                       INIT_LOSS, NOISY_CORRELATION, NOISY_MIN_KERNEL,
                                       RAW_INPUT_STD, SATURATED, VANISH_RATIO, change_lr, finding,
                                       hidden_weights, register)
from cnntricks.doctor.evidence import Evidence
from cnntricks.doctor.findings import Finding
from cnntricks.doctor.records import read_object, shorten
from cnntricks.rundir import DATA, first_conv_weight, latest_checkpoint

# ---- the monitor's statistics -----------------------------------------------------------------


@register
def check_dead_relu(evidence: Evidence) -> list[Finding]:
    worst, where, step = 0.0, None, None
    for record in evidence.stats:
        for name, layer in record.get("layers", {}).items():
            dead = layer.get("dead")
            if dead is not None and dead > worst:
                worst, where, step = dead, name, record["step"]
            if dead is not None and dead > DEAD_ERROR and step is not None:
                break
        if worst > DEAD_ERROR:
            break
    if worst <= DEAD_INFO:
        return []
    severity = "error" if worst > DEAD_ERROR else "info"
    change = change_lr(evidence, 0.1)
    if evidence.config is not None and evidence.config.model.activation == "relu":
        change["model.activation"] = "leaky_relu"
    return [finding(evidence, step, id="dead_relu", severity=severity,
                    title="Dead ReLU units" if severity == "error" else "Some ReLU units are dead",
                    evidence=f"{worst:.0%} of the units of layer {where} never activated over "
                             f"{5} sampled batches (step {step})",
                    figure="dead_units.png",
                    explanation="Seed §5: a large gradient can push a ReLU unit where it never activates again; "
                                "with too high a learning rate 'as much as 40% of your network can be dead'.",
                    advice="Lower the learning rate, or use Leaky ReLU / PReLU, whose negative slope keeps a gradient.",
                    change=change)]


@register
def check_saturation(evidence: Evidence) -> list[Finding]:
    for record in evidence.stats:
        for name, layer in record.get("layers", {}).items():
            share = layer.get("saturated")
            if share is not None and share > SATURATED:
                return [finding(evidence, record["step"], id="saturation", severity="warning",
                                title="Saturated sigmoid / tanh units",
                                evidence=f"{share:.0%} of layer {name}'s outputs are saturated at step {record['step']}",
                                figure="dead_units.png",
                                explanation="Seed §5: sigmoid and tanh saturate at their tails, where the gradient "
                                            "is almost zero, so saturated units stop learning.",
                                advice="Use ReLU-family activations, the calibrated 1/sqrt(n) initialization for "
                                       "tanh, or batch normalization.",
                                change={"model.activation": "relu", "model.init": "auto"})]
    return []


def gradient_ratio(record: dict) -> tuple[float, str, str] | None:
    """(first hidden layer's gradient norm / last hidden layer's, their names)."""
    weights = [(n, p["grad_norm"]) for n, p in hidden_weights(record) if p.get("grad_norm") is not None]
    if len(weights) < 2:
        return None
    (first, g_first), (last, g_last) = weights[0], weights[-1]
    if g_last <= 0:
        return None
    return g_first / g_last, first, last


@register
def check_gradients(evidence: Evidence) -> list[Finding]:
    """Vanishing and exploding gradients, from the gradient norms along depth."""
    findings = []
    for record in evidence.stats[1:]:  # step 1 is the initialization, read by bad_init
        found = gradient_ratio(record)
        total = record.get("grad_norm_total")
        if found and found[0] < VANISH_RATIO and not any(f.id == "vanishing_gradient" for f in findings):
            ratio, first, last = found
            findings.append(finding(
                evidence, record["step"], id="vanishing_gradient", severity="warning",
                title="Vanishing gradients", figure="gradients.png",
                evidence=f"the gradient of {first} is {ratio:.1e} of {last}'s at step {record['step']}",
                explanation="Each saturating or badly scaled layer multiplies the gradient by a factor below 1, "
                            "so the first layers of a deep network stop learning (seed §3, §5).",
                advice="Use ReLU-family activations with He initialization, or batch normalization.",
                change={"model.activation": "relu", "model.init": "he_normal"}))
        exploding = (found and found[0] > EXPLODE_RATIO) or (total is not None and total > EXPLODE_NORM)
        if exploding and not any(f.id == "exploding_gradient" for f in findings):
            what = (f"the total gradient norm is {total:.3g}" if total is not None and total > EXPLODE_NORM
                    else f"the gradient of {found[1]} is {found[0]:.1e} times {found[2]}'s")
            findings.append(finding(
                evidence, record["step"], id="exploding_gradient", severity="warning",
                title="Exploding gradients", figure="gradients.png",
                evidence=f"{what} at step {record['step']}",
                explanation="Gradients that grow layer after layer make steps that overshoot; the loss "
                            "jumps or becomes NaN (seed §3, §7).",
                advice="Lower the learning rate, use batch normalization or a smaller initialization.",
                change=change_lr(evidence, 0.1)))
    return findings


@register
def check_bad_init(evidence: Evidence) -> list[Finding]:
    facts = []
    steps, losses = evidence.losses
    classes = evidence.classes
    if len(losses) and classes and classes > 1:
        expected = math.log(classes)
        if abs(losses[0] - expected) > max(1.0, INIT_LOSS * expected):
            facts.append(f"the first loss is {losses[0]:.3g}, where ln({classes}) = {expected:.3g} is expected "
                         "from small random weights")
    if evidence.stats:
        stds = [layer.get("std") for layer in evidence.stats[0].get("layers", {}).values()
                if layer.get("std") is not None]
        if len(stds) >= 3 and stds[0] > 0:
            ratio = stds[-1] / stds[0]
            if ratio < DEPTH_COLLAPSE or ratio > DEPTH_EXPLODE:
                verb = "collapses" if ratio < DEPTH_COLLAPSE else "explodes"
                facts.append(f"the activations' spread {verb} with depth at step 1: std {stds[0]:.3g} in the "
                             f"first activation layer, {stds[-1]:.3g} in the last ({ratio:.1e}x)")
    if not facts:
        return []
    return [finding(evidence, 1, id="bad_init", severity="warning", title="A bad initialization",
                    evidence="; ".join(facts), figure="activations.png",
                    explanation="Seed §3: weights too small make the signal vanish layer by layer, too large make "
                                "it explode; 1/sqrt(n) (tanh) or He's sqrt(2/n) (ReLU) keep its variance.",
                    advice="Use model.init=auto (He for ReLU, calibrated for tanh/sigmoid).",
                    change={"model.init": "auto"})]


@register
def check_symmetric_init(evidence: Evidence) -> list[Finding]:
    for record in evidence.stats[:1]:
        same = [name for name, p in hidden_weights(record) if p.get("unit_spread") == 0.0]
        if same:
            return [finding(evidence, record["step"], id="symmetric_init", severity="error",
                            title="Symmetric weights: every unit is the same",
                            evidence=f"all units of {', '.join(same[:3])}{' ...' if len(same) > 3 else ''} have "
                                     "identical incoming weights at step 1",
                            figure="gradients.png",
                            explanation="Seed §3: with all-zero (or all-equal) weights every unit computes the "
                                        "same output and gets the same gradient, so they never become different.",
                            advice="Initialize with small random numbers: model.init=auto.",
                            change={"model.init": "auto"})]
    return []


@register
def check_unnormalized_input(evidence: Evidence) -> list[Finding]:
    record = next((r for r in evidence.stats if r.get("input")), None)
    cfg = evidence.config
    if record is None:
        if cfg is not None and cfg.preprocess.normalize == "none":
            return [finding(evidence, 1, id="unnormalized_input", severity="warning",
                            title="Inputs are not normalized", evidence="preprocess.normalize=none",
                            explanation="Seed §2: zero-center the data and normalize its scale.",
                            advice="Use preprocess.normalize=standardize.",
                            change={"preprocess.normalize": "standardize"})]
        return []
    # medians over every sampled batch: one small batch (2 bright images) is not the data set
    inputs = [r["input"] for r in evidence.stats
              if r.get("input") and r["input"].get("std") is not None and r["input"].get("mean") is not None]
    if not inputs:
        return []
    mean = float(np.median([x["mean"] for x in inputs]))
    std = float(np.median([x["std"] for x in inputs]))
    if std > RAW_INPUT_STD:
        severity, what = "error", f"the model's inputs have mean {mean:.3g} and std {std:.3g} (raw pixel values?)"
    elif abs(mean) > CENTER * max(std, 1e-12) and abs(mean) > 0.1:
        severity, what = "warning", f"the model's inputs have mean {mean:.3g} against a std of {std:.3g}: not zero-centred"
    else:
        return []
    return [finding(evidence, record["step"], id="unnormalized_input", severity=severity,
                    title="Inputs are not normalized", evidence=what,
                    explanation="Seed §2: zero-center the data (subtract the mean) and normalize its scale; "
                                "unscaled inputs make the first layer's gradients huge and the loss surface badly "
                                "conditioned.",
                    advice="Use preprocess.normalize=standardize (per-channel mean and std of the training set).",
                    change={"preprocess.normalize": "standardize"})]


@register
def check_noisy_filters(evidence: Evidence) -> list[Finding]:
    try:
        correlation = first_layer_smoothness(evidence.run_dir)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a damaged checkpoint: never a crash
        return [Finding(id="unreadable", severity="warning", title="The latest checkpoint's weights could not be read",
                        evidence=f"{type(err).__name__}: {shorten(str(err), 160)}",
                        explanation="The first layer's filters (noisy_filters) are read from the latest checkpoint's "
                                    "model.safetensors; a damaged file leaves that check out.",
                        advice="Resume or start the run again to write a new checkpoint, or restore it from a copy.")]
    if correlation is None or correlation >= NOISY_CORRELATION:
        return []
    return [finding(evidence, None, id="noisy_filters", severity="info", title="Noisy first-layer filters",
                    evidence=f"neighbouring weights of the first layer's filters correlate at {correlation:.2f} "
                             "(smooth, structured filters: clearly positive)",
                    figure="filters.png",
                    explanation="The slides: well-trained first-layer filters are smooth; noisy patterns point to "
                                "too little regularization or training that has not converged.",
                    advice="Regularize more (weight decay, L2) or train longer.",
                    change={"optim.weight_decay": 5e-4})]


def first_layer_smoothness(run_dir: Path) -> float | None:
    """Mean correlation of horizontally and vertically adjacent weights in the first conv layer's
    filters (latest checkpoint), each filter centred; None without a checkpoint, or when the first
    conv's kernel is smaller than NOISY_MIN_KERNEL: on a 3x3 kernel a trained edge detector
    ([-1, 0, 1]) has as little neighbour correlation as noise (measured -0.17 on a healthy
    fastnet), so smoothness says nothing there."""

    folder = latest_checkpoint(run_dir, weights_only=True)
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    channels = (read_object(Path(run_dir) / DATA, []) or {}).get("channels")  # data.json's problems: load_evidence's
    found = first_conv_weight(folder / "model.safetensors", channels, min_kernel=NOISY_MIN_KERNEL)
    if found is None:
        return None
    weight = found[1].astype(np.float64)
    w = weight - weight.mean(axis=(2, 3), keepdims=True)
    pairs = [(w[..., :, :-1], w[..., :, 1:]), (w[..., :-1, :], w[..., 1:, :])]
    numerator = sum(float((a * b).sum()) for a, b in pairs)
    denominator = sum(math.sqrt(float((a * a).sum()) * float((b * b).sum())) for a, b in pairs)
    return numerator / denominator if denominator > 0 else None


