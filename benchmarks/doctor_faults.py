"""Planted faults: does the training doctor (seed §7) find the fault that was planted, stay quiet on
healthy runs, and (with --fix) do its remedies repair the run?

What is measured: small training runs (Fashion-MNIST subsets or sklearn's digits, a few
seconds each, one thread, the monitor on with at least 10 samples per run) of 12 planted faults
and of healthy configurations, over --seeds seeds each. Every run directory is diagnosed with
`cnntricks.doctor.diagnose`; a run that raises (TrainingDiverged for LR x100) is diagnosed too.
Each fault has a SET of finding ids that count as detecting it; a run is detected when any one
of them is reported at severity warning or error. Reported:
  - per fault: recall = detected runs / runs; precision = of the runs (of every case, healthy ones
    included) where one of the fault's ids fired, the share where every such id was right for that
    run (in its case's `detected_by` or `also_true`; never on a healthy run); the ids that fired;
    the detection latency: the first step at which an expected finding's evidence was complete
    (`Finding.step`, or the first {"kind": "event", "event": "finding"} line of history.jsonl
    with an expected id, whichever is earlier), as a fraction of the steps the run was planned to take;
  - per finding id: precision = runs where it fired (warning+) and was right for that run's case /
    runs where it fired, over all runs, healthy ones included;
  - the false-alarm rate: healthy runs with any warning+ finding / healthy runs, and the ids;
  - with --fix: every fault again with doctor.mode=fix (same seeds), and each fault's healthy twin
    (TWIN: the same budget with the planted fault taken out). A fix run is fixed when its test
    accuracy (summary.json) reaches FIXED_ACCURACY of the twin's mean; one that raises is not.
    Per fault: fixed runs, the accuracy without fix, with fix and of the twin, the epochs trained
    in all attempts over the epochs planned (a restart's cost, attempts/<n>/), the remedies that
    fired (`remedy` events in history.jsonl); and how many runs already reached the bar without fix;
  - with the default case: the cost of the monitor and the live doctor, fit()'s wall time at the
    library's defaults (monitor every:50, doctor.mode=warn; the target) and at the benchmark's
    monitor (5x denser) against train.monitor=off doctor.mode=off, alone after every other run, 4
    runs each in the order off, on, default, default, on, off, twice, medians compared.
  - with --foreign: the same cases trained by a plain PyTorch loop (plain_loop.py: its own models,
    torch.optim, a Lightning-format metrics.csv with the loss of every step and nothing else: no config,
    no layer statistics, no events), each diagnosed from that history alone, as `cnntricks doctor` reads a
    Lightning version folder. The faults whose symptom a history shows (HISTORY_SYMPTOMS: divergence, a
    slow loss, the loss band, the gap, low accuracy, chance, a plateau) are judged by the same recall,
    precision and false-alarm targets; the others (zero and small init, vanishing gradients, raw inputs,
    dead units: layer statistics) are trained and their findings printed, not judged. The cases the
    plain loop cannot build (vgg, resnet, the seed's augmentation policy) are left out of this arm.
Each fault run also prints a symptom check computed from history.jsonl and stats.jsonl directly
(not through the doctor), so that a missed detection can be told from a fault that did not show;
each healthy run a health check (val acc >= 0.7, train - val < 0.1), so that a flagged healthy run
can be told from a near miss that really went wrong.

Why: a doctor that misses planted faults, or cries wolf on healthy runs, teaches users to
ignore it; one whose cure costs more than the disease is no better. The targets are the issue's:
precision and recall >= 0.95 per fault, false alarms <= 5%, >= 80% of faulty runs fixed, the
monitor and the live doctor at most 5% of fit()'s time. Targets not measured (no --fix, no
default case) are reported as such and fail nothing.

    python benchmarks/doctor_faults.py                        # 3 seeds, about 3 minutes on 2 cores
    python benchmarks/doctor_faults.py --fix                  # and the remedies: 12-17 minutes on 2 cores
    python benchmarks/doctor_faults.py --only lr_x100,zero_init --seeds 1 --keep /tmp/runs
    python benchmarks/doctor_faults.py --foreign-only         # the plain-loop arm alone: about 15 minutes on 2 cores
    python benchmarks/doctor_faults.py --smoke                # 12 tiny runs (5 of them plain-loop) and 3 timed ones, for CI
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

# Targets (the issue's; without --smoke a missed one exits 1). With 3 seeds, 0.95 asks for 3 of 3.
MIN_RECALL = 0.95          # per fault: detected runs / runs
MIN_PRECISION = 0.95       # per fault: runs where its ids fired and were right / runs where they fired
MAX_FALSE_ALARM_RATE = 0.05  # healthy runs with a warning+ finding / healthy runs
MIN_FIXED_SHARE = 0.80     # --fix: fixed runs / fix runs, over every fault
FIXED_ACCURACY = 0.90      # a fix run is fixed at this share of its healthy twin's mean test accuracy
MAX_DOCTOR_COST = 0.05     # monitor + live doctor: extra fit() wall time over train.monitor=off doctor.mode=off
ALARM = ("warning", "error")  # severities that count as a detection, or as a false alarm
MONITOR_SAMPLES = 15  # stats.jsonl records aimed at per run: trends need at least 10
LABEL_IMAGES = 4000  # training images in the npz files of shuffled and of true labels (as BASE's subset)

# Every run: one thread (two workers share 2 cores), a small subset, a few epochs.
BASE = ("train.threads=1", "data.subset=4000", "train.epochs=5")


class Case(NamedTuple):  # a NamedTuple, not a dataclass: the tests load this file without registering it
    name: str
    overrides: tuple[str, ...]
    detected_by: frozenset[str] = frozenset()  # empty: a healthy run
    symptom: str | None = None  # the name of the symptom check (SYMPTOMS) for a fault
    also_true: frozenset[str] = frozenset()  # ids that are right on this fault's runs too (precision only)

    @property
    def healthy(self) -> bool:
        return not self.detected_by


def fault(name: str, overrides: str, ids: str, symptom: str, also_true: str = "") -> Case:
    return Case(name, tuple(overrides.split()), frozenset(ids.split()), symptom, frozenset(also_true.split()))


def healthy(name: str, overrides: str = "") -> Case:
    return Case(name, tuple(overrides.split()))


# Where a config departs from the textbook fault, the comment says why (measured on 3 seeds).
FAULTS = [
    # no warm-up: ramping from 0 to LR 10 over the first epoch, BatchNorm keeps the loss finite (at chance)
    fault("lr_x100", "optim.lr=10 schedule.warmup_epochs=0", "lr_diverged nonfinite", "diverged"),
    fault("lr_div100", "optim.lr=0.001", "lr_too_low", "slow_loss"),
    fault("zero_init", "model.init=zeros", "symmetric_init", "symmetric"),
    fault("small_init_deep_mlp", "model.name=mlp model.depth=10 model.init=small_normal",
          "bad_init vanishing_gradient", "vanishing"),
    fault("deep_sigmoid", "model.name=mlp model.depth=10 model.activation=sigmoid",
          "saturation vanishing_gradient bad_init", "vanishing"),
    # at the default LR 0.1, batch 2 kills the last stage's ReLUs within 500 steps (a dead_relu case);
    # at 0.01 it trains, with the per-batch loss band of seed §7's small-batch figure
    # 2 epochs: its training accuracy still climbs at the end, and too_short says so rightly
    fault("batch_2", "optim.batch_size=2 optim.lr=0.01 data.subset=600 train.epochs=2", "batch_too_small",
          "loss_band", also_true="too_short"),
    fault("tiny_set", "data.subset=300 optim.batch_size=32 optim.weight_decay=0 optim.label_smoothing=0 "
          "augment.policy=none train.epochs=40", "overfitting", "gap"),
    # a width-2 net may stay at chance in a seed: at_chance is right there too
    fault("tiny_model", "model.width=2 model.depth=1", "underfitting", "low_accuracy", also_true="at_chance"),
    fault("raw_inputs", "preprocess.normalize=none", "unnormalized_input", "input_scale"),
    # {scratch}: the run's scratch folder, where main() writes the npz (all of it is used: data.subset=null)
    # at chance after 5 epochs: at_chance names it (its advice: check that the labels match the images)
    fault("shuffled_labels", "data.source=npz data.root={scratch}/shuffled_labels.npz",
          "underfitting overfitting at_chance", "chance"),
    # without BatchNorm LR 0.3 kills 77-87% of the ReLU units; 0.5 and above give NaN instead
    # the planted cause is a too-high LR: "far too high" (lr_diverged, a rising loss) names it too;
    # in some seeds the loss then becomes NaN, and nonfinite says so rightly
    fault("dead_relu", "model.norm=none optim.lr=0.3 schedule.name=constant", "dead_relu lr_too_high lr_diverged",
          "dead", also_true="nonfinite"),
    # 30 constant-LR epochs on 1,400 training images also overfit for real: train 100% against
    # validation 86-90% at the end (measured), so an overfitting finding there is right, not a false one
    fault("plateau", "schedule.name=constant data.subset=2000 train.epochs=30", "plateau", "plateau",
          also_true="overfitting"),
]
HEALTHY = [
    healthy("default"),
    healthy("lr_x3", "optim.lr=0.3"),
    healthy("lr_0.03", "optim.lr=0.03"),
    healthy("batch_32", "optim.batch_size=32"),
    healthy("vgg", "model.name=vgg"),
    healthy("resnet", "model.name=resnet"),
    healthy("mlp", "model.name=mlp"),
    healthy("deep_mlp_he", "model.name=mlp model.depth=10 model.init=he_normal optim.lr=0.03"),
    healthy("leaky_relu", "model.activation=leaky_relu"),
    healthy("adamw", "optim.name=adamw optim.lr=0.001"),
    healthy("seed_augment", "augment.policy=seed"),
    healthy("tanh_calibrated", "model.activation=tanh model.init=calibrated"),
    healthy("narrow_fastnet", "model.width=4"),
    healthy("plateau_schedule", "schedule.name=plateau train.epochs=8"),
    healthy("small_set_regularized", "data.subset=1000 optim.batch_size=32 augment.policy=standard train.epochs=10"),
    healthy("digits_mlp", "data.source=digits data.subset=null model.name=mlp train.epochs=15"),
]
# Healthy twins (--fix) that are not among HEALTHY.
TWINS = [
    healthy("warmup_0", "schedule.warmup_epochs=0"),
    healthy("batch_128_subset_600", "data.subset=600 train.epochs=2"),
    healthy("subset_300_regularized", "data.subset=300 optim.batch_size=32 train.epochs=40"),
    healthy("true_labels", "data.source=npz data.root={scratch}/true_labels.npz"),
    healthy("no_norm_lr_0.03", "model.norm=none schedule.name=constant optim.lr=0.03"),
    healthy("cosine_30_epochs", "data.subset=2000 train.epochs=30"),
]
# Each fault's healthy twin: the fault's budget (data, epochs, model size) with the planted fault
# taken out. --fix counts a remedied run as fixed when its test accuracy reaches FIXED_ACCURACY of
# the twin's mean. Test accuracies below: 1 seed, 5 epochs on 4,000 images unless said.
TWIN = {
    "lr_x100": "warmup_0",           # optim.lr=10 out; the warm-up stays off as in the fault (0.86)
    "lr_div100": "default",          # optim.lr=0.001 out (fault 0.51, twin 0.86)
    "zero_init": "default",          # model.init=zeros out: He init
    # the 10-layer MLP's healthy recipe: He init (model.init=auto) at LR 0.03, 0.81; at the default
    # LR 0.1 the same net reaches 0.72, no healthy bar
    "small_init_deep_mlp": "deep_mlp_he",
    "deep_sigmoid": "deep_mlp_he",
    # batch 128 at LR 0.1 (the defaults), same 600 images and 2 epochs: 8 steps, 0.16, WEAKER than
    # the fault itself (0.70 with 600 steps); batch 32 gives 0.60. Within this budget batch 2 costs no
    # accuracy, so batch_2 counts as fixed without any remedy (the "fine without fix" column says so)
    "batch_2": "batch_128_subset_600",
    # the default regularization back (weight decay 5e-4, label smoothing 0.1, flips): 0.79 against 0.74
    "tiny_set": "subset_300_regularized",
    "tiny_model": "default",         # width 16, depth 3 (fault 0.20)
    "raw_inputs": "default",         # with batch norm raw inputs cost nothing here (fault 0.86)
    "shuffled_labels": "true_labels",  # the same npz, images and split, with the true labels
    # the planted cause is the LR: without batch norm the healthy LR is 0.03 (0.84); at 0.1 the net
    # still dies (0.25)
    "dead_relu": "no_norm_lr_0.03",
    "plateau": "cosine_30_epochs",   # the default cosine schedule (0.86, as the fault: no accuracy lost)
}
CASES = {case.name: case for case in FAULTS + HEALTHY + TWINS}
RESULTS = Path(__file__).resolve().parent / "results" / "doctor_faults.json"
SMOKE_CASES = ["lr_x100", "zero_init", "raw_inputs", "default", "mlp"]
SMOKE_FIX = ["lr_x100"]  # fix runs in --smoke (with its twin)
SMOKE_OVERRIDES = ("data.subset=1000", "train.epochs=2")


# ---- symptom checks: each reads the run's own files and says whether the fault showed ----

def loss_means(batches: list[dict]) -> tuple[float, float]:
    """Mean batch loss over the first and the last 10 batches (a third of them in a short run)."""
    losses = [b["loss"] for b in batches if b.get("loss") is not None]
    count = max(1, min(10, len(losses) // 3))
    return statistics.fmean(losses[:count]), statistics.fmean(losses[-count:])


def final(epochs: list[dict], key: str) -> float:
    return epochs[-1][key] if epochs and epochs[-1].get(key) is not None else float("nan")


def symptom_diverged(run: dict) -> tuple[bool, str]:
    """The loss became non-finite, or ended no lower than it started (seed §7's 'very high' curve)."""
    event = next((e for e in run["events"] if e.get("event") == "nonfinite"), None)
    event = event or next((b for b in run["batches"] if "loss" in b and b["loss"] is None), None)  # a foreign log's NaN
    if event is not None:
        return True, f"loss non-finite at step {event['step']} of {run['planned_steps']} planned"
    first, last = loss_means(run["batches"])
    return last >= first, f"no nonfinite event; batch loss {first:.3f} -> {last:.3f}"


def symptom_slow_loss(run: dict) -> tuple[bool, str]:
    first, last = loss_means(run["batches"])
    val = final(run["epochs"], "val_acc")
    ok = last > 0.7 * first and val < 0.75  # the default recipe: loss 2.3 -> ~0.7, val acc ~0.85
    return ok, f"batch loss {first:.3f} -> {last:.3f} ({100 * (1 - last / first):.0f}% lower), val acc {val:.3f}"


def unit_spread(run: dict) -> float:
    """The largest unit_spread over hidden weights in the last stats record: 0 when every unit is alike."""
    params = run["stats"][-1]["params"] if run["stats"] else {}
    return max((p.get("unit_spread") or 0.0 for name, p in params.items() if not name.startswith("head")),
               default=float("nan"))


def symptom_symmetric(run: dict) -> tuple[bool, str]:
    spread, val = unit_spread(run), final(run["epochs"], "val_acc")
    return spread < 1e-6, f"hidden unit spread {spread:.2g} at the end, val acc {val:.3f}"


def symptom_vanishing(run: dict) -> tuple[bool, str]:
    """Gradient norm of the first hidden weight over the last hidden one's, on the first record."""
    first = run["stats"][0] if run["stats"] else {"params": {}, "layers": {}}
    grads = [p.get("grad_norm") or 0.0 for name, p in first["params"].items() if not name.startswith("head")]
    ratio = grads[0] / grads[-1] if grads and grads[-1] else float("nan")
    stds = [layer.get("std") or 0.0 for layer in first["layers"].values()]
    saturated = [layer["saturated"] for record in run["stats"][-1:] for layer in record["layers"].values()
                 if layer.get("saturated") is not None]
    val = final(run["epochs"], "val_acc")
    text = (f"step 1: grad norm first/last hidden {ratio:.2g}, activation std first {stds[0] if stds else 0:.2g} "
            f"last {stds[-1] if stds else 0:.2g}; val acc {val:.3f}")
    if saturated:
        text += f"; saturated at the end {100 * max(saturated):.0f}% (max layer)"
    return (not ratio >= 1e-2) or val < 0.5, text


def loss_band(batches: list[dict]) -> float:
    """Median over windows of 50 batches of (90th - 10th percentile) / mean of the batch loss."""
    losses = [b["loss"] for b in batches if b.get("loss") is not None]
    bands = []
    for start in range(len(losses) // 2, len(losses) - 49, 25):  # the second half: past the warm-up
        window = np.array(losses[start:start + 50])
        bands.append((np.percentile(window, 90) - np.percentile(window, 10)) / window.mean())
    return float(np.median(bands)) if bands else float("nan")


def symptom_loss_band(run: dict) -> tuple[bool, str]:
    band = loss_band(run["batches"])
    return band > 0.6, f"per-batch loss band (p90-p10)/mean {band:.2f} in the second half (batch 128: ~0.15)"


def symptom_gap(run: dict) -> tuple[bool, str]:
    train, val = final(run["epochs"], "train_acc"), final(run["epochs"], "val_acc")
    return train - val > 0.15, f"train acc {train:.3f}, val acc {val:.3f}, gap {train - val:+.3f}"


def symptom_low_accuracy(run: dict) -> tuple[bool, str]:
    train, val = final(run["epochs"], "train_acc"), final(run["epochs"], "val_acc")
    return train < 0.6 and abs(train - val) < 0.05, f"train acc {train:.3f}, val acc {val:.3f}"


def symptom_input_scale(run: dict) -> tuple[bool, str]:
    inputs = run["stats"][0].get("input", {}) if run["stats"] else {}
    std = inputs.get("std") or float("nan")
    return std > 10, (f"model input mean {inputs.get('mean', float('nan')):.1f} std {std:.1f} "
                      f"max {inputs.get('max', float('nan')):.0f}; val acc {final(run['epochs'], 'val_acc'):.3f}")


def symptom_chance(run: dict) -> tuple[bool, str]:
    train, val = final(run["epochs"], "train_acc"), final(run["epochs"], "val_acc")
    return val < 0.2, f"train acc {train:.3f}, val acc {val:.3f} (chance 0.1)"


def dead_share(record: dict) -> tuple[float, float]:
    """(share of all ReLU units that are dead, largest share in one layer) in a stats record."""
    layers = [layer for layer in record["layers"].values() if layer.get("dead") is not None]
    units = sum(layer["units"] for layer in layers)
    dead = sum(layer["dead"] * layer["units"] for layer in layers)
    return (dead / units if units else float("nan"), max((layer["dead"] for layer in layers), default=float("nan")))


def symptom_dead(run: dict) -> tuple[bool, str]:
    overall, worst = dead_share(run["stats"][-1]) if run["stats"] else (float("nan"), float("nan"))
    return overall > 0.4, (f"dead ReLU units at the end {100 * overall:.0f}% (worst layer {100 * worst:.0f}%), "
                           f"val acc {final(run['epochs'], 'val_acc'):.3f}")


def symptom_plateau(run: dict) -> tuple[bool, str]:
    """No new best validation accuracy in the last third of the epochs (within 0.5%: about one
    validation image at 222, as data.subset=2000 gives)."""
    val = [e["val_acc"] for e in run["epochs"] if e.get("val_acc") is not None]
    cut = len(val) - len(val) // 3
    before, after = max(val[:cut], default=float("nan")), max(val[cut:], default=float("nan"))
    return after - before < 0.005, (f"best val acc epochs 1-{cut} {before:.3f}, epochs {cut + 1}-{len(val)} "
                                    f"{after:.3f} ({100 * (after - before):+.1f}%)")


def symptom_healthy(run: dict) -> tuple[bool, str]:
    """For healthy cases: the run trained (val acc >= 0.7) and did not overfit (train - val < 0.1)."""
    train, val = final(run["epochs"], "train_acc"), final(run["epochs"], "val_acc")
    return val >= 0.7 and train - val < 0.1, f"train acc {train:.3f}, val acc {val:.3f}, gap {train - val:+.3f}"


# The symptoms a history alone shows (losses and accuracies): the foreign-loop arm judges the faults with these.
HISTORY_SYMPTOMS = frozenset({"diverged", "slow_loss", "loss_band", "gap", "low_accuracy", "chance", "plateau"})
SYMPTOMS = {"diverged": symptom_diverged, "slow_loss": symptom_slow_loss, "symmetric": symptom_symmetric,
            "vanishing": symptom_vanishing, "loss_band": symptom_loss_band, "gap": symptom_gap,
            "low_accuracy": symptom_low_accuracy, "input_scale": symptom_input_scale, "chance": symptom_chance,
            "dead": symptom_dead, "plateau": symptom_plateau, "healthy": symptom_healthy}


# ---- one run (in a worker process) ----

# ABCCBA: a drift in the machine's speed hits every arm alike. on = the benchmark's monitor (every
# planned // MONITOR_SAMPLES steps: every:10 here, 5x the default rate) and doctor.mode=warn;
# default = the library's defaults (train.monitor=every:50, doctor.mode=warn): what the target is judged on
OVERHEAD_ORDER = ("off", "on", "default", "default", "on", "off") * 2  # one pass: +-5% between passes
SMOKE_OVERHEAD_ORDER = ("off", "on", "default")  # --smoke: each arm once (the figures printed, not judged)


class Job(NamedTuple):
    case: str
    overrides: tuple[str, ...]
    seed: int
    run_dir: str
    role: str = "detect"  # detect (doctor.mode=warn), fix (doctor.mode=fix), twin (--fix's reference), overhead,
    # foreign (the plain loop of plain_loop.py, diagnosed from its metrics.csv alone)
    order: tuple[str, ...] = OVERHEAD_ORDER  # overhead: the arms' order


def planned_steps(cfg) -> int:
    """The steps `fit` will take if it runs to the end (a diverged run stops early)."""
    from cnntricks.data import load_splits

    images = cfg.data.subset or len(load_splits(cfg.data, cfg.train.seed).train)  # subset: exactly N
    return cfg.train.epochs * (images // min(cfg.optim.batch_size, images))


def load_config(job: Job):
    """The job's config, with the monitor every planned // MONITOR_SAMPLES steps; and the planned steps."""
    from cnntricks import config as config_module

    cfg = config_module.load(None, list(job.overrides) + [f"train.seed={job.seed}"])
    planned = planned_steps(cfg)
    cfg.train.monitor = f"every:{max(1, planned // MONITOR_SAMPLES)}"
    return cfg, planned


def run_job(job: Job) -> dict:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # image size, subset notices: about the recipe, not the doctor
    if job.role == "foreign":
        return run_foreign(job)
    if job.role != "overhead":
        return run_case(job)
    try:
        return time_doctor_cost(job)
    except Exception as err:  # noqa: BLE001 - reported, and the target is then not measured
        return {"case": job.case, "seed": job.seed, "role": job.role, "seconds": 0.0,
                "error": f"{type(err).__name__}: {err}"}


def run_case(job: Job) -> dict:
    """Train one case and seed into `run_dir`, diagnose it, and check its symptom."""
    from cnntricks.doctor import diagnose
    from cnntricks.monitor import read_stats
    from cnntricks.rundir import read_history
    from cnntricks.session import train
    from cnntricks.train.loop import TrainingDiverged

    cfg, planned = load_config(job)
    run_dir = job.run_dir
    error, started = None, time.perf_counter()
    try:
        train(cfg, run_dir, progress=False, report=False)
    except TrainingDiverged as err:
        error = f"TrainingDiverged: {str(err).split(';')[0]}"
    except Exception as err:  # noqa: BLE001 - a broken case is reported, not fatal
        error = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - started
    result = {"case": job.case, "seed": job.seed, "role": job.role, "seconds": seconds, "error": error,
              "planned_steps": planned, "findings": [], "finding_events": []}
    try:
        result["findings"] = [{"id": f.id, "severity": f.severity, "step": f.step, "epoch": f.epoch}
                              for f in diagnose(run_dir)]
    except Exception:  # noqa: BLE001 - the doctor is young; its crash is a result too
        result["doctor_error"] = traceback.format_exc(limit=3)
    try:
        records = read_history(run_dir)
        stats = read_stats(run_dir) if (Path(run_dir) / "stats.jsonl").is_file() else []
    except (OSError, ValueError):
        records, stats = [], []
    run = {"batches": [r for r in records if r.get("kind") == "batch"],
           "epochs": [r for r in records if r.get("kind") == "epoch"],
           "events": [r for r in records if r.get("kind") == "event"], "stats": stats,
           "planned_steps": result["planned_steps"]}
    result["finding_events"] = [{"id": e.get("id"), "severity": e.get("severity"), "step": e.get("step")}
                                for e in run["events"] if e.get("event") == "finding"]
    result["remedies"] = [{"id": e.get("id"), "what": e.get("what"), "step": e.get("step")}
                          for e in run["events"] if e.get("event") == "remedy"]
    # fix mode may start a run again (attempts/<n>/): every attempt's epochs are the remedy's cost
    attempts = sorted(Path(run_dir).glob("attempts/*/history.jsonl"))
    result["epochs_trained"] = len(run["epochs"]) + sum(
        sum(1 for r in read_history(path.parent) if r.get("kind") == "epoch") for path in attempts)
    result["epochs_planned"] = cfg.train.epochs
    result["stats_records"] = len(stats)
    summary = Path(run_dir) / "summary.json"  # only a run that finished has one
    result["test_acc"] = json.loads(summary.read_text()).get("test_acc") if summary.is_file() else None
    return check_symptom(result, run)


def check_symptom(result: dict, run: dict) -> dict:
    """The run's last accuracies and steps, and whether its case's symptom (or health) showed, into `result`."""
    result["steps"] = max((b["step"] for b in run["batches"]), default=0)
    result["val_acc"] = run["epochs"][-1].get("val_acc") if run["epochs"] else None
    result["train_acc"] = run["epochs"][-1].get("train_acc") if run["epochs"] else None
    try:
        result["symptom_shown"], result["symptom"] = SYMPTOMS[CASES[result["case"]].symptom or "healthy"](run)
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, statistics.StatisticsError) as err:
        result["symptom_shown"], result["symptom"] = False, f"cannot check ({type(err).__name__}: {err})"
    return result


def load_plain_loop():
    """benchmarks/plain_loop.py, the loop a user writes without cnntricks (imported by path: this file runs as a
    script, in spawned workers, and loaded by the tests)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "plain_loop.py"
    spec = importlib.util.spec_from_file_location("plain_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_loop_takes(case: Case) -> bool:
    """Can the plain loop train this case (its one conv net and MLP, three schedules, flip and crop)?"""
    try:
        load_plain_loop().parse(case.overrides)
    except ValueError:
        return False
    return True


def run_foreign(job: Job) -> dict:
    """Train one case and seed with the plain loop, which writes a Lightning-format metrics.csv and nothing
    else; diagnose that log, and check the case's symptom from it."""
    started, error, trained = time.perf_counter(), None, {}
    try:
        trained = load_plain_loop().train(job.overrides + (f"train.seed={job.seed}",), job.run_dir)
    except Exception as err:  # noqa: BLE001 - a broken case is reported, not fatal
        error = f"{type(err).__name__}: {err}"
    return diagnose_foreign(job, {"seconds": time.perf_counter() - started, "error": error,
                                  "planned_steps": trained.get("planned_steps", 0), "test_acc": trained.get("test_acc")})


def diagnose_foreign(job: Job, trained: dict) -> dict:
    """A plain-loop run's result: `trained` (seconds, error, planned_steps, test_acc), the doctor's findings on
    its metrics.csv, and its symptom from that history (--rediagnose calls it again on kept runs)."""
    from cnntricks.doctor import diagnose
    from cnntricks.doctor.foreign import ForeignLogError, read_foreign

    result = {"case": job.case, "seed": job.seed, "role": job.role, **trained, "findings": [], "finding_events": [],
              "remedies": [], "stats_records": 0}
    try:
        result["findings"] = [{"id": f.id, "severity": f.severity, "step": f.step, "epoch": f.epoch}
                              for f in diagnose(job.run_dir)]
    except Exception:  # noqa: BLE001
        result["doctor_error"] = traceback.format_exc(limit=3)
    try:
        _, batches, epochs = read_foreign(job.run_dir)
    except (ForeignLogError, OSError):
        batches, epochs = [], []
    run = {"batches": batches, "epochs": epochs, "events": [], "stats": [], "planned_steps": result["planned_steps"]}
    return check_symptom(result, run)


OVERHEAD_OFF = ("train.monitor=off", "doctor.mode=off")


def time_doctor_cost(job: Job) -> dict:
    """fit()'s wall time with the monitor and doctor.mode=warn (at the benchmark's sampling rate, and at
    the library's defaults), against both off. Wall time, not train_seconds: the doctor runs at epoch
    ends, outside the timed training steps."""
    from cnntricks import config as config_module
    from cnntricks.session import train

    cfg_on, _ = load_config(job._replace(overrides=job.overrides + ("doctor.mode=warn",)))
    cfg_off = config_module.load(None, list(job.overrides) + list(OVERHEAD_OFF) + [f"train.seed={job.seed}"])
    cfg_default = config_module.load(None, list(job.overrides) + [f"train.seed={job.seed}"])
    arms = {"on": cfg_on, "off": cfg_off, "default": cfg_default}
    warm_up = config_module.load(None, list(job.overrides) + list(OVERHEAD_OFF) + ["train.epochs=1"])
    train(warm_up, Path(job.run_dir) / "warm-up", progress=False, report=False)  # imports, first kernels, the data cache: untimed
    in_order, train_seconds = [], []
    for index, arm in enumerate(job.order):
        started = time.perf_counter()
        summary = train(arms[arm], Path(job.run_dir) / f"{index}-{arm}", progress=False, report=False)
        in_order.append(time.perf_counter() - started)
        train_seconds.append(summary["train_seconds"])
    on, off, default = (statistics.median(t for a, t in zip(job.order, in_order) if a == arm)
                        for arm in ("on", "off", "default"))
    return {"case": job.case, "seed": job.seed, "role": job.role, "seconds": sum(in_order), "error": None,
            "order": list(job.order), "monitor": cfg_on.train.monitor, "fit_seconds_in_order": in_order,
            "train_seconds_in_order": train_seconds, "on": on, "off": off, "default": default,
            "default_monitor": cfg_default.train.monitor, "cost": default / off - 1, "cost_dense": on / off - 1}


# ---- the npz data sets: shuffled labels, and their twin's true ones ----

LABEL_FILES = {"shuffled_labels.npz": True, "true_labels.npz": False}  # file -> labels permuted


def write_labels_npz(path: Path, images: int, shuffle: bool, seed: int = 0) -> None:
    """An npz of Fashion-MNIST images with their labels, permuted when `shuffle`: `images` training
    images once the npz source has carved its validation split from them, and 1000 test images
    (their labels permuted too)."""
    from cnntricks.config import DataConfig
    from cnntricks.data import load_splits

    splits = load_splits(DataConfig(subset=images), seed)  # validation shrinks in proportion
    x = torch.cat([splits.train.images, splits.val.images])[:, 0].numpy()  # (N, H, W) uint8
    y = torch.cat([splits.train.labels, splits.val.labels]).numpy()
    test = splits.test.subset(torch.arange(min(1000, len(splits.test))))
    y_test = test.labels.numpy()
    rng = np.random.default_rng(seed)
    if shuffle:
        y, y_test = rng.permutation(y), rng.permutation(y_test)
    np.savez(path, x=x, y=y, x_test=test.images[:, 0].numpy(), y_test=y_test,
             classes=np.array(splits.train.classes, dtype=str))


# ---- metrics ----

def alarms(result: dict) -> set[str]:
    """Ids reported at warning or error, by diagnose or as in-training finding events."""
    return {f["id"] for f in result["findings"] + result["finding_events"] if f["severity"] in ALARM}


def right_ids(result: dict) -> frozenset[str]:
    """The ids that are right on this run: its fault's, and those also true there; none on a healthy run."""
    case = CASES[result["case"]]
    return case.detected_by | case.also_true


def latency(result: dict, expected: frozenset[str]) -> float | None:
    """First step at which an expected finding was complete, as a share of the planned steps."""
    steps = [f["step"] for f in result["finding_events"] if f["id"] in expected and f["step"] is not None]
    steps += [f["step"] for f in result["findings"]
              if f["id"] in expected and f["severity"] in ALARM and f["step"] is not None]
    return min(steps) / result["planned_steps"] if steps and result["planned_steps"] else None


def summarize(results: list[dict], role: str = "detect") -> dict:
    """Recall, precision and latency per fault, precision per finding id, the false-alarm rate, over the
    runs of `role`: detect (doctor.mode=warn; fix, twin and timing runs are summarized apart) or foreign
    (the plain loop). The foreign arm judges the faults whose symptom a history shows (HISTORY_SYMPTOMS);
    the others' runs are left out of every figure, and what fired on them is kept under "unjudged"."""
    results = [r for r in results if r["role"] == role]
    judged = [c for c in FAULTS if role != "foreign" or c.symptom in HISTORY_SYMPTOMS]
    unjudged = {c.name: dict(sorted(Counter(i for r in results if r["case"] == c.name for i in alarms(r)).items()))
                for c in FAULTS if c not in judged and any(r["case"] == c.name for r in results)}
    results = [r for r in results if r["case"] not in unjudged]
    left_out = {}
    if role == "foreign":  # judged where the history shows the fault, healthy where the run trained well
        left_out = dict(Counter(r["case"] for r in results if not r["symptom_shown"]))
        left_out = {name: f"{count}/{sum(r['case'] == name for r in results)}" for name, count in left_out.items()}
        results = [r for r in results if r["symptom_shown"]]
    faults = {}
    for case in judged:
        runs = [r for r in results if r["case"] == case.name]
        if not runs:
            continue
        detected = [r for r in runs if alarms(r) & case.detected_by]
        latencies = [x for r in detected if (x := latency(r, case.detected_by)) is not None]
        # precision: every run where one of this fault's ids fired, and of those, the runs where
        # all of the fault's ids that fired were right there (a wrong id beside a right one is a
        # wrong diagnosis for the user who reads both)
        fired = [r for r in results if alarms(r) & case.detected_by]
        right = [r for r in fired if alarms(r) & case.detected_by <= right_ids(r)]
        faults[case.name] = {"runs": len(runs), "detected": len(detected), "recall": len(detected) / len(runs),
                             "fired_runs": len(fired), "right_runs": len(right),
                             "precision": len(right) / len(fired) if fired else None,
                             "wrong_runs": [f"{r['case']}/{r['seed']}" for r in fired if r not in right],
                             "latency": statistics.fmean(latencies) if latencies else None,
                             "symptom_shown": sum(bool(r["symptom_shown"]) for r in runs),
                             "fired": dict(sorted(Counter(i for r in runs for i in alarms(r)).items())),
                             "expected": sorted(case.detected_by)}
    fired = Counter(i for r in results for i in alarms(r))
    expected = Counter(i for r in results for i in alarms(r) & right_ids(r))
    precision = {i: {"fired": n, "expected": expected[i], "precision": expected[i] / n}
                 for i, n in sorted(fired.items())}
    healthy_runs = [r for r in results if CASES[r["case"]].healthy]
    false_alarms = [r for r in healthy_runs if alarms(r)]
    return {"faults": faults, "precision": precision, "healthy_runs": len(healthy_runs),
            "healthy_runs_trained_well": sum(bool(r["symptom_shown"]) for r in healthy_runs),
            "false_alarm_runs": len(false_alarms),
            "false_alarm_rate": len(false_alarms) / len(healthy_runs) if healthy_runs else None,
            "false_alarm_ids": dict(sorted(Counter(i for r in false_alarms for i in alarms(r)).items())),
            "false_alarm_cases": [f"{r['case']}/{r['seed']}" for r in false_alarms], "unjudged": unjudged,
            "left_out": left_out}


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize_fixes(results: list[dict]) -> dict | None:
    """Per fault with fix runs: fixed runs (test acc >= FIXED_ACCURACY x the twin's mean; a run
    that raised has none), the accuracies, the remedies; overall: the fixed share. None without fix runs."""
    faults = {}
    for case in FAULTS:
        fixes = [r for r in results if r["case"] == case.name and r["role"] == "fix"]
        if not fixes:
            continue
        twin = mean([r["test_acc"] for r in results
                     if r["case"] == TWIN[case.name] and r["role"] in ("detect", "twin")])
        bar = None if twin is None else FIXED_ACCURACY * twin
        unfixed = [r for r in results if r["case"] == case.name and r["role"] == "detect"]

        def reaches(run: dict) -> bool:
            return bar is not None and run["test_acc"] is not None and run["test_acc"] >= bar

        fixed = [r for r in fixes if reaches(r)]
        below = {r["seed"] for r in unfixed if not reaches(r)}  # seeds the fault really hurt
        faults[case.name] = {
            "runs": len(fixes), "fixed": len(fixed), "raised": sum(r["test_acc"] is None for r in fixes),
            "twin": TWIN[case.name], "twin_acc": twin, "bar": bar,
            "acc_without_fix": mean([r["test_acc"] for r in unfixed]),
            "acc_with_fix": mean([r["test_acc"] for r in fixes]),
            "fine_without_fix": sum(reaches(r) for r in unfixed), "runs_without_fix": len(unfixed),
            "rescued": sum(r["seed"] in below for r in fixed), "hurt": len(below & {r["seed"] for r in fixes}),
            "remedies": dict(Counter(f"{e['id']}:{e['what']}" for r in fixes for e in r["remedies"]).most_common()),
            "epochs_ratio": mean([r.get("epochs_trained", 0) / r["epochs_planned"] for r in fixes
                                  if r.get("epochs_planned")])}
    if not faults:
        return None
    runs, fixed = sum(f["runs"] for f in faults.values()), sum(f["fixed"] for f in faults.values())
    hurt, rescued = sum(f["hurt"] for f in faults.values()), sum(f["rescued"] for f in faults.values())
    return {"faults": faults, "runs": runs, "fixed": fixed, "fixed_share": fixed / runs,
            "hurt": hurt, "rescued": rescued, "rescued_share": rescued / hurt if hurt else None}


def summarize_cost(results: list[dict]) -> dict | None:
    """The timing job's result; None without one, or when it raised."""
    timed = [r for r in results if r["role"] == "overhead" and not r["error"]]
    return timed[0] if timed else None


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def print_tables(summary: dict, fixes: dict | None, cost: dict | None, foreign: dict | None = None) -> None:
    if summary["faults"] or summary["healthy_runs"]:
        print_detection(summary)
    if foreign:
        print()
        print("foreign loop: the plain PyTorch loop of plain_loop.py, diagnosed from its metrics.csv alone "
              "(Lightning's CSVLogger format; no config, no layer statistics)")
        print()
        print_detection(foreign)
        unjudged = "; ".join(f"{name}: {', '.join(f'{i} {n}' for i, n in fired.items()) or 'none'}"
                             for name, fired in foreign["unjudged"].items())
        if unjudged:
            print(f"not judged (their fault shows only in layer statistics, which a history lacks), warning+ ids: "
                  f"{unjudged}")
        if foreign["left_out"]:
            print("left out, as the history did not show the fault (a fault's symptom check) or the plain loop did "
                  "not train the healthy config well (its health check): "
                  + ", ".join(f"{name} {runs} runs" for name, runs in foreign["left_out"].items()))
    if fixes:
        print()
        print_fixes(fixes)
    if cost:
        print()
        print(f"monitor + live doctor cost: {100 * cost['cost']:+.1f}% of fit() wall time at the defaults "
              f"(monitor {cost['default_monitor']}, doctor.mode=warn: {cost['default']:.2f} s), "
              f"{100 * cost['cost_dense']:+.1f}% at this benchmark's monitor {cost['monitor']} ({cost['on']:.2f} s), "
              f"against {cost['off']:.2f} s with train.monitor=off doctor.mode=off ("
              + (f"medians of {cost['order'].count('off')} runs each" if cost['order'].count('off') > 1 else
                 "one run each") + f", order {' '.join(cost['order'])})")


def print_detection(summary: dict) -> None:
    header = (f"{'fault':<22} {'runs':>4} {'found':>5} {'recall':>6} {'precision':>9} {'latency':>7} {'symptom':>7}  "
              f"ids fired (warning+: runs)")
    print(header)
    print("-" * len(header))
    for name, row in summary["faults"].items():
        lat = "-" if row["latency"] is None else f"{row['latency']:.2f}"
        prec = "-" if row["precision"] is None else f"{row['precision']:.2f}"
        fired = ", ".join(f"{i}{'*' if i in row['expected'] else ''} {n}" for i, n in row["fired"].items()) or "none"
        print(f"{name:<22} {row['runs']:>4} {row['detected']:>5} {row['recall']:>6.2f} {prec:>9} {lat:>7} "
              f"{row['symptom_shown']:>3}/{row['runs']:<3}  {fired}")
        if row["wrong_runs"]:
            print(f"{'':<22} its ids fired wrongly on: {', '.join(row['wrong_runs'])}")
    print("(* = an id that counts for that fault; precision = runs of any case where its ids fired and all were "
          "right / runs where they fired; latency = first expected finding's step / planned steps)")
    print()
    header = f"{'finding':<22} {'fired':>5} {'expected':>8} {'precision':>9}"
    print(header)
    print("-" * len(header))
    for finding_id, row in summary["precision"].items():
        print(f"{finding_id:<22} {row['fired']:>5} {row['expected']:>8} {row['precision']:>9.2f}")
    if not summary["precision"]:
        print("(no finding at warning or error in any run)")
    print()
    ids = ", ".join(f"{i} {n}" for i, n in summary["false_alarm_ids"].items()) or "none"
    print(f"false alarms: {summary['false_alarm_runs']}/{summary['healthy_runs']} healthy runs "
          f"({percent(summary['false_alarm_rate'])}); ids: {ids}")
    if summary["false_alarm_cases"]:
        print(f"  flagged: {', '.join(summary['false_alarm_cases'])}")
    print(f"healthy runs that trained well (val acc >= 0.7, train - val < 0.1): "
          f"{summary['healthy_runs_trained_well']}/{summary['healthy_runs']}")


def print_fixes(fixes: dict) -> None:
    header = (f"{'fault (doctor.mode=fix)':<22} {'fixed':>5} {'raised':>6} {'no fix':>6} {'fix':>6} {'twin':>6} "
              f"{'fine w/o fix':>12} {'epochs':>6}  twin; remedies (events: count)")
    print(header)
    print("-" * len(header))

    def acc(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}x"

    for name, row in fixes["faults"].items():
        remedies = ", ".join(f"{k} {n}" for k, n in row["remedies"].items()) or "none"
        print(f"{name:<22} {row['fixed']:>2}/{row['runs']:<2} {row['raised']:>6} {acc(row['acc_without_fix']):>6} "
              f"{acc(row['acc_with_fix']):>6} {acc(row['twin_acc']):>6} "
              f"{row['fine_without_fix']:>5}/{row['runs_without_fix']:<6} {ratio(row.get('epochs_ratio')):>6}  "
              f"{row['twin']}; {remedies}")
    rescued = "-" if fixes["rescued_share"] is None else f"{fixes['rescued_share']:.2f}"
    print(f"(accuracy: mean test accuracy, summary.json; fixed = reaches {FIXED_ACCURACY:.0%} of the twin's; "
          f"a run that raised is not fixed; fine w/o fix = doctor.mode=warn runs already there; epochs = epochs "
          f"trained in all attempts / epochs planned: a restart's cost)")
    print(f"fixed: {fixes['fixed']}/{fixes['runs']} fix runs ({percent(fixes['fixed_share'])}); on the "
          f"{fixes['hurt']} seeds whose doctor.mode=warn run was below the bar: {fixes['rescued']} ({rescued})")


def targets(summary: dict, fixes: dict | None, cost: dict | None,
            foreign: dict | None = None) -> list[tuple[str, bool | None, str]]:
    """(target, met: True / False / None = not measured, the numbers) for each of the issue's targets; with
    the foreign arm, its recall, precision and false alarms too (the faults a history shows)."""
    rows = detection_targets(summary)
    rows += [
        (f"fixed >= {MIN_FIXED_SHARE:.0%} of faulty runs", None if fixes is None
         else fixes["fixed_share"] >= MIN_FIXED_SHARE - 1e-9,
         "run with --fix" if fixes is None else f"{fixes['fixed']}/{fixes['runs']} ({percent(fixes['fixed_share'])})"),
        (f"monitor + live doctor <= {MAX_DOCTOR_COST:.0%} of fit()", None if cost is None
         else cost["cost"] <= MAX_DOCTOR_COST, "needs the default case" if cost is None
         else f"{100 * cost['cost']:+.1f}%"),
    ]
    if foreign is not None:
        rows += [(f"foreign loop: {name}", met, numbers) for name, met, numbers in detection_targets(foreign)]
    return rows


def detection_targets(summary: dict) -> list[tuple[str, bool | None, str]]:
    faults = summary["faults"]
    low_recall = [f"{n} {r['recall']:.2f}" for n, r in faults.items() if r["recall"] < MIN_RECALL - 1e-9]
    low_precision = [f"{n} {r['precision']:.2f}" for n, r in faults.items()
                     if r["precision"] is not None and r["precision"] < MIN_PRECISION - 1e-9]
    rate = summary["false_alarm_rate"]
    return [
        (f"recall >= {MIN_RECALL:.2f} per fault", (not low_recall) if faults else None,
         ", ".join(low_recall) or f"lowest {min((r['recall'] for r in faults.values()), default=0):.2f}"),
        (f"precision >= {MIN_PRECISION:.2f} per fault",
         (not low_precision) if any(r["precision"] is not None for r in faults.values()) else None,
         ", ".join(low_precision) or "every fault whose ids fired"),
        (f"false alarms <= {MAX_FALSE_ALARM_RATE:.0%}", None if rate is None else rate <= MAX_FALSE_ALARM_RATE + 1e-9,
         f"{summary['false_alarm_runs']}/{summary['healthy_runs']} healthy runs"),
    ]


def print_targets(rows: list[tuple[str, bool | None, str]]) -> None:
    print("\ntargets (the issue's):")
    for name, met, numbers in rows:
        verdict = "not measured" if met is None else "met" if met else "NOT MET"
        print(f"  {name:<52} {verdict} ({numbers})")
    measured = [met for _, met, _ in rows if met is not None]
    print(f"targets: {sum(measured)} of {len(measured)} measured met" + (
        f", {len(rows) - len(measured)} not measured" if len(measured) < len(rows) else ""))


# ---- command line ----

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="doctor_faults.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Cases: faults {', '.join(c.name for c in FAULTS)}; healthy {', '.join(c.name for c in HEALTHY)}; "
               f"healthy twins (--fix) {', '.join(f'{f} -> {t}' for f, t in TWIN.items())}. "
               f"Exit status: 0 = ran (and, without --smoke, met every measured target: recall and precision >= "
               f"{MIN_RECALL:.2f} per fault, false alarms <= {MAX_FALSE_ALARM_RATE:.0%}, with --fix fixed >= "
               f"{MIN_FIXED_SHARE:.0%} of faulty runs, with the default case monitor + live doctor <= "
               f"{MAX_DOCTOR_COST:.0%} of fit()); 1 = a measured target not met; 2 = bad usage; 3 = data problem.")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per case, 0..N-1 (default 3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed (default 0): seeds FIRST..FIRST+N-1, fresh runs for a held-out check")
    parser.add_argument("--only", help="comma-separated fault and healthy case names to run (default: all)")
    parser.add_argument("--fix", action="store_true",
                        help="also run each fault with doctor.mode=fix (same seeds) and its healthy twin, and report "
                             f"the share of fix runs reaching {100 * FIXED_ACCURACY:.0f}%% of the twin's test accuracy")
    parser.add_argument("--foreign", action="store_true",
                        help="also train every case the plain loop can (plain_loop.py: a plain PyTorch loop writing "
                             "a Lightning-format metrics.csv and nothing else) and diagnose it from that history; the "
                             "faults a history shows are judged by the same targets")
    parser.add_argument("--foreign-only", action="store_true",
                        help="only the plain-loop arm of --foreign (results: benchmarks/results/doctor_faults_foreign.json)")
    parser.add_argument("--rediagnose", action="store_true",
                        help="with --foreign-only and --keep DIR: train nothing; diagnose the plain-loop runs kept in "
                             "DIR again (after a change to the doctor) and rewrite the results file's figures")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each (default 2)")
    parser.add_argument("--out", type=Path,
                        help="results file (default benchmarks/results/doctor_faults.json, doctor_faults_foreign.json "
                             "with --foreign-only; with --smoke, none)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the run directories under DIR")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny runs for CI: one seed, {', '.join(SMOKE_CASES)}, and {', '.join(SMOKE_FIX)} "
                             f"with doctor.mode=fix and its twin, {' '.join(SMOKE_OVERRIDES)}; never fails on a "
                             "target; too short for the symptom and health checks to mean much")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error(f"--seeds and --workers must be at least 1, got {args.seeds} and {args.workers}")
    selectable = [case.name for case in FAULTS + HEALTHY]
    names = args.only.split(",") if args.only else (SMOKE_CASES if args.smoke else selectable)
    unknown = [n for n in names if n not in selectable]
    if unknown:
        parser.error(f"--only: unknown case(s) {', '.join(unknown)}; cases: {', '.join(selectable)}")
    args.cases = [CASES[n] for n in names]
    fixing = [c.name for c in args.cases if not c.healthy and (args.fix or (args.smoke and c.name in SMOKE_FIX))]
    args.fix_cases = [CASES[n] for n in fixing] if not args.foreign_only else []
    if args.rediagnose and not (args.foreign_only and args.keep):
        parser.error("--rediagnose needs --foreign-only and --keep DIR (the runs a --keep run left there)")
    args.foreign = args.foreign or args.foreign_only or args.smoke
    if args.smoke:
        args.seeds = 1
    elif args.out is None:
        args.out = RESULTS.with_name("doctor_faults_foreign.json") if args.foreign_only else RESULTS
    return args


def case_overrides(case: Case, smoke: bool, scratch: Path) -> tuple[str, ...]:
    overrides = list(BASE) + [o.replace("{scratch}", str(scratch)) for o in case.overrides]
    overrides += list(SMOKE_OVERRIDES) if smoke else []
    if "data.source=npz" in case.overrides:
        overrides.append("data.subset=null")  # all of the file
    return tuple(overrides)


def jobs_for(args: argparse.Namespace, scratch: Path) -> list[Job]:
    """The timing job first (the longest), then the detect runs, the twins (--fix) not among them, the fix runs."""
    def job(case: Case, seed: int, role: str, extra: tuple[str, ...] = ()) -> Job:
        suffix = "" if role == "detect" else f"-{role}"
        return Job(case.name, case_overrides(case, args.smoke, scratch) + extra, seed,
                   str(scratch / f"{case.name}{suffix}-seed{seed}"), role)

    names = [case.name for case in args.cases]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    twins = list(dict.fromkeys(TWIN[case.name] for case in args.fix_cases if TWIN[case.name] not in names))
    foreign = [job(case, seed, "foreign") for case in args.cases if plain_loop_takes(case) for seed in seeds]
    if args.foreign_only:
        return foreign
    jobs = [job(CASES["default"], 0, "overhead")] if "default" in names else []
    if args.smoke:
        jobs = [timed._replace(order=SMOKE_OVERHEAD_ORDER) for timed in jobs]
    jobs += [job(case, seed, "detect") for case in args.cases for seed in seeds]
    jobs += foreign if args.foreign else []
    jobs += [job(CASES[name], seed, "twin") for name in twins for seed in seeds]
    jobs += [job(case, seed, "fix", ("doctor.mode=fix",)) for case in args.fix_cases for seed in seeds]
    return jobs


def git_commit() -> str | None:
    """HEAD of this checkout, with '-dirty' when files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head, dirty = (subprocess.run(["git", *command], cwd=root, capture_output=True, text=True, timeout=10,
                                      check=True).stdout.strip()
                       for command in (["rev-parse", "HEAD"], ["status", "--porcelain"]))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def print_run(result: dict, done: int, total: int) -> None:
    label = result["case"] + ("" if result["role"] == "detect" else f" ({result['role']})")
    if result["role"] == "overhead":
        times = ", ".join(f"{arm} {t:.2f} s" for arm, t in zip(result.get("order", []), result.get(
            "fit_seconds_in_order", []))) or f"[{result.get('error')}]"
        print(f"[{done:>3}/{total}] {label:<22} seed {result['seed']}  {result['seconds']:5.1f} s  fit(): {times}",
              flush=True)
        return
    findings = ", ".join(f"{f['id']}:{f['severity']}@{f['step']}" for f in result["findings"]) or "none"
    events = ", ".join(f"{f['id']}:{f['severity']}@{f['step']}" for f in result["finding_events"])
    note = f"  in training: {events}" if events else ""
    note += f"  [{result['error'].splitlines()[0][:80]}]" if result["error"] else ""
    if result.get("doctor_error"):
        note += f"  [doctor raised {result['doctor_error'].strip().splitlines()[-1][:80]}]"
    print(f"[{done:>3}/{total}] {label:<22} seed {result['seed']}  {result['seconds']:5.1f} s  "
          f"findings: {findings}{note}", flush=True)
    if CASES[result["case"]].healthy:
        verdict = "health check " + ("passed" if result["symptom_shown"] else "FAILED")
    else:
        verdict = "symptom " + ("shown" if result["symptom_shown"] else "NOT SHOWN")
    test = "-" if result["test_acc"] is None else f"{result['test_acc']:.3f}"
    remedies = ", ".join(f"{e['id']}:{e['what']}@{e['step']}" for e in result["remedies"])
    print(f"          {verdict}: {result['symptom']}; test acc {test}"
          f"{'; remedies: ' + remedies if remedies else ''}", flush=True)


def rediagnose(out: Path, kept: Path) -> list[dict]:
    """The plain-loop runs of the results file `out`, diagnosed again in their folders under `kept`."""
    saved = json.loads(out.read_text())
    results = []
    for run in saved["runs"]:
        job = Job(run["case"], (), run["seed"], str(kept / f"{run['case']}-foreign-seed{run['seed']}"), "foreign")
        result = diagnose_foreign(job, {key: run[key] for key in ("seconds", "error", "planned_steps", "test_acc")})
        results.append(result)
        print_run(result, len(results), len(saved["runs"]))
    return results


def write_label_files(jobs: list[Job], scratch: Path, images: int) -> None:
    for name, shuffle in LABEL_FILES.items():
        if any(name in override for job in jobs for override in job.overrides):
            write_labels_npz(scratch / name, images, shuffle)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cnntricks.data import DataError

    print(f"doctor faults: {sum(not c.healthy for c in args.cases)} fault(s), {sum(c.healthy for c in args.cases)} "
          f"healthy case(s) x {args.seeds} seed(s), {len(args.fix_cases)} fault(s) with doctor.mode=fix, "
          f"{'the plain loop only' if args.foreign_only else 'with the plain loop' if args.foreign else 'cnntricks'}, "
          f"{args.workers} worker(s) of 1 thread, torch {torch.__version__}{' [smoke]' if args.smoke else ''}",
          flush=True)
    started, commit = time.perf_counter(), git_commit()  # at the start: the code the workers import
    scratch_context = tempfile.TemporaryDirectory(prefix="doctor-faults-") if args.keep is None else None
    scratch = Path(scratch_context.name) if scratch_context else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        jobs = [] if args.rediagnose else jobs_for(args, scratch)
        try:
            write_label_files(jobs, scratch, 1000 if args.smoke else LABEL_IMAGES)
        except DataError as err:
            print(f"doctor_faults: data problem: {err}", file=sys.stderr)
            return 3
        results = []
        # The timing job runs last and alone: with another run beside it on 2 cores its arms differed
        # by up to 13% either way (measured), far more than what it measures.
        parallel = [job for job in jobs if job.role != "overhead"]
        alone = [job for job in jobs if job.role == "overhead"]
        for batch, workers in ((parallel, args.workers), (alone, 1)):
            if not batch:
                continue
            # spawn: a forked child would inherit torch's thread pool from this process
            with multiprocessing.get_context("spawn").Pool(min(workers, len(batch))) as pool:
                for result in pool.imap_unordered(run_job, batch):
                    results.append(result)
                    print_run(result, len(results), len(jobs))
                pool.close()
                pool.join()
        if args.rediagnose:
            results = rediagnose(args.out, scratch)
    finally:
        if scratch_context:
            scratch_context.cleanup()
    seconds = time.perf_counter() - started
    order = {case.name: index for index, case in enumerate(FAULTS + HEALTHY + TWINS)}
    roles = ("detect", "foreign", "twin", "fix", "overhead")
    results.sort(key=lambda r: (roles.index(r["role"]), order[r["case"]], r["seed"]))
    data_errors = [r for r in results if r["error"] and r["error"].startswith("DataError")]
    if data_errors:
        print(f"doctor_faults: data problem: {data_errors[0]['error']}", file=sys.stderr)
        return 3

    summary, fixes, cost = summarize(results), summarize_fixes(results), summarize_cost(results)
    foreign = summarize(results, "foreign") if any(r["role"] == "foreign" for r in results) else None
    print()
    print_tables(summary, fixes, cost, foreign)
    rows = targets(summary, fixes, cost, foreign)
    print_targets(rows)
    met = all(ok is not False for _, ok, _ in rows)
    print(f"total {seconds:.0f} s for {len(results)} jobs")
    if args.out:
        cases = args.cases + [CASES[name] for name in dict.fromkeys(r["case"] for r in results)
                              if CASES[name] not in args.cases]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "benchmark": "doctor_faults", "smoke": args.smoke, "fix": bool(args.fix_cases), "commit": commit,
            "torch": torch.__version__, "seeds": args.seeds, "first_seed": args.first_seed, "workers": args.workers, "seconds": seconds,
            "base_overrides": list(BASE),
            "targets": {"min_recall": MIN_RECALL, "min_precision": MIN_PRECISION,
                        "max_false_alarm_rate": MAX_FALSE_ALARM_RATE, "min_fixed_share": MIN_FIXED_SHARE,
                        "fixed_accuracy": FIXED_ACCURACY, "max_doctor_cost": MAX_DOCTOR_COST,
                        "rows": [{"target": name, "met": ok, "numbers": numbers} for name, ok, numbers in rows],
                        "met": met},
            "cases": {c.name: {"overrides": list(c.overrides), "detected_by": sorted(c.detected_by),
                               "also_true": sorted(c.also_true), "symptom": c.symptom, "twin": TWIN.get(c.name)}
                      for c in cases},
            "summary": summary, "foreign": foreign, "fixes": fixes, "cost": cost, "runs": results}, indent=2))
        print(f"wrote {args.out}")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
