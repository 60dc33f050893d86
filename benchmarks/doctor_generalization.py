"""Is the doctor right on runs it was not tuned on, and does following its advice help?

The planted-fault benchmark (doctor_faults.py) scores the doctor on the runs its thresholds were
calibrated on. This one draws a grid of ordinary runs a user might make, on four real datasets of
different kinds, and takes the ground truth from measurement, not from the doctor's own rules:

  datasets   Fashion-MNIST (1,000 training images), scikit-learn's digits (8x8, 1,007), RGB icons
             (32x32, 1,590: the system's icon themes Adwaita, Oxygen and Tango, classes by context,
             split by icon name), letters A-J rendered from the system's fonts (1,000); 30% more
             held out for validation, so accuracies are read on 400+ images
  models     every model of the zoo but resnet34/50 (their CPU cost): fastnet, vgg, resnet, mlp, resnet18
  base runs  per (dataset, model), CONFIGS runs drawn with a seeded generator: epochs 2-50, every
             schedule, batch 16-512, with and without warm-up, LR 0.001-1, augmentation, weight decay
  truth      every base run is trained again with each standard change (CHANGES: LR x3, /3, x10, /10,
             twice the epochs, more and less weight decay, twice the width, another augmentation
             policy); the base run is *improvable by X* when X raises its final validation accuracy by
             IMPROVE (2) points or more (mean over the seeds), and *healthy* when no change does and
             it is not at chance (a run at chance is judged in its own row)
  doctor     each base run (monitor on, as the library's default) is diagnosed from its run directory;
             every warning or error's `try:` change is trained too (the same seeds) and its gain measured

The (dataset, model) pairs are split once (HALVES) into a calibration half and a held-out half; the
doctor's thresholds may be tuned on the first only, and the figures are printed side by side:
false alarms on healthy runs, improvable runs flagged, flagged runs whose advice helps (raises
validation accuracy by HELPS points or more), advice that makes a run worse by more than 1 point,
runs at chance accuracy (below CHANCE_SHARE x 1/classes after 2+ epochs) flagged. Beside them, how
far apart the halves are on each figure, with a 90% interval from a cluster bootstrap over the base
configs (is a difference over 5 points beyond what other draws of configs would give?).

Every finished training is one line of OUT/runs.jsonl (a run killed mid-way is trained again), and
the base runs' directories are kept (without checkpoints) in OUT/base/: a rerun continues, and
`--evaluate` diagnoses the kept runs again with the doctor as it is now, training only the advice
that is new.

    python benchmarks/doctor_generalization.py                  # the whole grid: hours on 2 cores, resumable
    python benchmarks/doctor_generalization.py --max-runs 200   # train at most 200 runs, then evaluate what is done
    python benchmarks/doctor_generalization.py --evaluate       # no new base or change runs; the doctor again
    python benchmarks/doctor_generalization.py --smoke          # digits, 2 models, 2 changes, 1 seed: CI
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "doctor_generalization.json"
IMPROVE = 2.0       # points of validation accuracy a change must add for the base run to be "improvable" by it
HELPS = 1.0         # points an advice must add to count as helping
WORSE = -1.0        # ... below this it made the run worse
CHANCE_SHARE = 1.5  # final validation accuracy under 1.5 / classes after 2+ epochs: a run at chance
ALARM = ("warning", "error")
TARGETS = {"false_alarms": ("<=", 0.05), "flagged_improvable": (">=", 0.90), "advice_helps": (">=", 0.70),
           "advice_worse": ("<=", 0.05), "chance_flagged": (">=", 1.0)}

ICON_THEMES = ("Adwaita", "oxygen", "Tango")
ICON_CLASSES = ("actions", "apps", "devices", "mimetypes", "places", "status")
INSTALL_ICONS = "apt-get install adwaita-icon-theme oxygen-icon-theme tango-icon-theme"
COMMON = {"train.threads": "1", "doctor.mode": "off", "train.checkpoint_every": "1000", "data.val_fraction": "0.3"}


def datasets(cache: Path) -> dict[str, dict[str, str]]:
    return {"fashion-mnist": {"data.source": "npz", "data.root": str(cache / "fashion-mnist.npz")},
            "digits": {"data.source": "digits"},
            "icons": {"data.source": "image-folder", "data.root": str(cache / "icons"), "data.image_size": "32"},
            "letters": {"data.source": "npz", "data.root": str(cache / "letters.npz")}}


def build_subset(source: str, path: Path) -> Path:
    """An npz of SUBSET training images (and 30% more for validation) and TEST_IMAGES test images of
    `source`, stratified with seed 0: every run trains on the same images, and the test split, which
    the grid does not read, costs little to evaluate."""
    if path.is_file():
        return path
    import numpy as np
    import torch
    from cnntricks import config
    from cnntricks.data import load_splits
    from cnntricks.data.split import stratified_split
    splits = load_splits(config.load(None, [f"data.source={source}"]).data, 0)
    keep = round(SUBSET / (1 - float(COMMON["data.val_fraction"])))
    _, train = stratified_split(splits.train.labels, keep, torch.Generator().manual_seed(0))
    _, test = stratified_split(splits.test.labels, TEST_IMAGES, torch.Generator().manual_seed(0))
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, x=splits.train.images[train].numpy(), y=splits.train.labels[train].numpy(),
             x_test=splits.test.images[test].numpy(), y_test=splits.test.labels[test].numpy(),
             classes=np.array(splits.classes))
    partial.rename(path)
    return path


SUBSET = 1000       # Fashion-MNIST and letters: training images of a run (after its validation split)
TEST_IMAGES = 500


MODELS = ("fastnet", "vgg", "resnet", "mlp", "resnet18")
COST = ("mlp", "fastnet", "vgg", "resnet", "resnet18")  # the order the grid is trained in: a partial store covers most
DATASETS = ("fashion-mnist", "digits", "icons", "letters")
# split once, by dataset and model: every dataset and every model is in both halves
HALVES = {(d, m): ("calibration", "held-out")[(i + j) % 2] for i, d in enumerate(DATASETS) for j, m in enumerate(MODELS)}


def build_icons(root: Path) -> Path:
    """root/{train,test}/<context>/<theme>-<name>.png from the installed icon themes (the PNG nearest 48 px
    of each icon), split by icon name (a fifth of the names, by hash, are test) so no name is in both."""
    if (root / "complete").is_file():
        return root
    chosen: dict[tuple[str, str, str], tuple[int, Path]] = {}
    for theme in ICON_THEMES:
        for path in Path("/usr/share/icons", theme).rglob("*.png"):
            context = next((part for part in path.parts if part in ICON_CLASSES), None)
            size = next((int(part.split("x")[0]) for part in path.parts if "x" in part and part.split("x")[0].isdigit()),
                        None)
            if context is None or size is None or size < 32:
                continue
            key = (theme, context, path.stem)
            if key not in chosen or abs(size - 48) < abs(chosen[key][0] - 48):
                chosen[key] = (size, path)
    if len(chosen) < 600:
        raise SystemExit(f"doctor_generalization: only {len(chosen)} icons under /usr/share/icons; {INSTALL_ICONS}")
    temporary = root.with_name(root.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    for (theme, context, name), (_, path) in sorted(chosen.items()):
        split = "test" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0 else "train"
        target = temporary / split / context / f"{theme}-{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (temporary / "complete").write_text(f"{len(chosen)} icons\n")
    shutil.rmtree(root, ignore_errors=True)
    temporary.rename(root)
    return root


def base_configs(dataset: str, model: str, count: int, data: dict) -> list[dict[str, str]]:
    """`count` base runs of (dataset, model), drawn with a generator seeded by their names."""
    rng = random.Random(f"{dataset}/{model}")
    epochs = (2, 5, 10, 20, 50) if dataset == "digits" else (2, 5, 10, 20)
    if model == "resnet18":  # 120 images/s on 2 cores: one base run per dataset, short
        epochs, count = (2, 3, 5), 1
    runs = []
    for _ in range(count):
        runs.append({**COMMON, **data[dataset], "model.name": model,
                     "train.epochs": str(rng.choice(epochs)),
                     "schedule.name": rng.choice(("cosine", "onecycle", "step", "constant", "plateau")),
                     "schedule.warmup_epochs": rng.choice(("0", "1")),
                     "optim.batch_size": str(rng.choice((16, 32, 64, 128, 256, 512))),
                     "optim.lr": str(rng.choice((0.001, 0.01, 0.03, 0.1, 0.1, 0.1, 0.3, 1.0))),
                     "optim.weight_decay": rng.choice(("0", "5e-4", "5e-3")),
                     "augment.policy": rng.choice(("none", "flip", "standard")),
                     "model.width": rng.choice(("8", "16"))})
    return runs


def number(value: float) -> str:
    return f"{value:.3g}"


def changes(base: dict[str, str]) -> dict[str, dict[str, str]]:
    """The standard changes (CHANGES) of a base run, each as the overrides it changes."""
    lr, wd = float(base["optim.lr"]), float(base["optim.weight_decay"])
    return {"lr x3": {"optim.lr": number(lr * 3)}, "lr /3": {"optim.lr": number(lr / 3)},
            "lr x10": {"optim.lr": number(lr * 10)}, "lr /10": {"optim.lr": number(lr / 10)},
            "epochs x2": {"train.epochs": str(2 * int(base["train.epochs"]))},
            "more weight decay": {"optim.weight_decay": number(max(4 * wd, 5e-4))},
            "less weight decay": {"optim.weight_decay": number(wd / 4) if wd > 5e-4 else "0"},
            "wider": {"model.width": str(2 * int(base["model.width"]))},
            "augmentation": {"augment.policy": "standard" if base["augment.policy"] in ("none", "flip") else "flip"}}


CHANGES = tuple(changes({"optim.lr": "0.1", "optim.weight_decay": "0", "train.epochs": "2", "model.width": "8",
                         "augment.policy": "none"}))


def key_of(overrides: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(overrides.items())).encode()).hexdigest()[:16]


def merged(base: dict[str, str], change: dict) -> dict[str, str]:
    """`base` with a change applied; a no-op change (the same values) gives the base run's key."""
    return {**base, **{k: v if isinstance(v, str) else (number(v) if isinstance(v, float) else str(v))
                       for k, v in change.items()}}


# ---- training (in worker processes) ------------------------------------------------------------


def train_job(job: tuple[dict, int, str | None]) -> dict:
    """Train one config and seed; keep its run directory (without checkpoints) when `keep` is given."""
    import tempfile

    import torch
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from cnntricks import config
    from cnntricks.session import train
    overrides, seed, keep = job
    cfg = config.load(None, [f"{k}={v}" for k, v in overrides.items()] + [f"train.seed={seed}"])
    if keep is None:
        cfg.train.monitor = "off"  # the doctor reads only the base runs
    started = time.perf_counter()
    record = {"key": key_of(overrides), "seed": seed, "overrides": overrides, "val_acc": None, "error": None}
    with tempfile.TemporaryDirectory(prefix="doctor-gen-") as scratch:
        run_dir = Path(scratch) / "run"
        try:
            summary = train(cfg, run_dir, progress=False, report=False)
            record.update(val_acc=summary.get("val_acc"), test_acc=summary.get("test_acc"),
                          classes=len(summary.get("classes") or []))
        except Exception as err:  # noqa: BLE001 - a diverged or broken run is a result (at chance)
            record["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        if keep is not None and run_dir.is_dir():
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(Path(keep), ignore_errors=True)
            shutil.copytree(run_dir, keep, ignore=shutil.ignore_patterns("report", "misclassified.npz", "*.lock"))
    record["seconds"] = time.perf_counter() - started
    return record


class RunStore:
    """OUT/runs.jsonl: one line per finished (config, seed); a torn last line is ignored."""

    def __init__(self, out: Path):
        self.path = out / "runs.jsonl"
        self.done: dict[tuple[str, int], dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[record["key"], record["seed"]] = record

    def add(self, record: dict) -> None:
        self.done[record["key"], record["seed"]] = record
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def accuracy(self, overrides: dict, seeds: range, classes: int) -> float | None:
        """Mean final validation accuracy (%) over the seeds; a failed run counts at chance; None if missing."""
        values = []
        for seed in seeds:
            record = self.done.get((key_of(overrides), seed))
            if record is None:
                return None
            values.append(100 * (record["val_acc"] if record["val_acc"] is not None else 1 / classes))
        return statistics.fmean(values)


def train_all(jobs: list[tuple[dict, int, str | None]], store: RunStore, workers: int, limit: int | None) -> int:
    """Train the jobs not in the store yet (at most `limit`); returns how many were trained."""
    todo, seen = [], set(store.done)
    for job in jobs:  # in order, each (config, seed) once: the same advice comes from every seed's row
        if (key_of(job[0]), job[1]) not in seen:
            seen.add((key_of(job[0]), job[1]))
            todo.append(job)
    todo = todo[:limit] if limit is not None else todo
    if not todo:
        return 0
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        for done, record in enumerate(pool.imap_unordered(train_job, todo), 1):
            store.add(record)
            elapsed = time.perf_counter() - started
            print(f"  [{done}/{len(todo)}] {record['overrides']['data.source']} {record['overrides']['model.name']} "
                  f"seed {record['seed']}: val {record['val_acc']}, {record['seconds']:.1f} s "
                  f"(about {elapsed / done * (len(todo) - done) / 60:.0f} min left)", flush=True)
    return len(todo)


# ---- the doctor and the figures ------------------------------------------------------------------


def plan(args, data: dict) -> list[dict]:
    """Every base run: {"dataset", "model", "half", "overrides"}."""
    models, names = (("fastnet", "mlp"), ("digits",)) if args.smoke else (MODELS, DATASETS)
    grid = []
    for dataset in names:
        for model in models:
            for overrides in base_configs(dataset, model, 1 if args.smoke else args.configs, data):
                if args.smoke:
                    overrides.update({"train.epochs": "2", "optim.batch_size": "128"})
                grid.append({"dataset": dataset, "model": model, "half": HALVES[dataset, model],
                             "overrides": overrides})
    return grid


def change_set(args, base: dict) -> dict[str, dict]:
    found = changes(base)
    return {name: found[name] for name in (("lr x10", "lr /10") if args.smoke else CHANGES)}


def diagnosis(run_dir: Path) -> list[dict]:
    """The warning and error findings of a kept base run, worst first, each with its change."""
    from cnntricks.doctor import diagnose
    if not (run_dir / "history.jsonl").is_file():
        return []
    return [{"id": f.id, "severity": f.severity, "change": f.change} for f in diagnose(run_dir) if f.severity in ALARM]


def judge(args, grid: list[dict], store: RunStore, out: Path) -> list[dict]:
    """Per base run and seed: its accuracy, the truth (gains of the changes), the doctor's alarms."""
    seeds = range(args.seeds)
    rows = []
    for base in grid:
        overrides = base["overrides"]
        record = store.done.get((key_of(overrides), 0))
        classes = (record or {}).get("classes") or 10
        base_mean = store.accuracy(overrides, seeds, classes)
        gains = {name: store.accuracy(merged(overrides, change), seeds, classes)
                 for name, change in change_set(args, overrides).items()}
        if base_mean is None or any(value is None for value in gains.values()):
            continue  # not trained yet (--max-runs)
        gains = {name: value - base_mean for name, value in gains.items()}
        for seed in seeds:
            run = store.done[key_of(overrides), seed]
            rows.append({**base, "seed": seed, "classes": classes, "base_acc": base_mean, "gains": gains,
                         "val_acc": 100 * run["val_acc"] if run["val_acc"] is not None else 100 / classes,
                         "epochs": int(overrides["train.epochs"]),
                         "alarms": diagnosis(out / "base" / f"{key_of(overrides)}-s{seed}")})
    return rows


def advice_jobs(rows: list[dict], seeds: range) -> list[tuple[dict, int, None]]:
    jobs = []
    for row in rows:
        for alarm in row["alarms"]:
            if alarm["change"]:
                jobs += [(merged(row["overrides"], alarm["change"]), seed, None) for seed in seeds]
    return jobs


def share(hits: int, count: int) -> float | None:
    return hits / count if count else None


def figures(rows: list[dict], store: RunStore, seeds: range) -> dict:
    """The figures of one half (the module docstring's list)."""
    def advice_gain(row: dict, alarm: dict) -> float | None:
        if not alarm["change"]:
            return None
        after = store.accuracy(merged(row["overrides"], alarm["change"]), seeds, row["classes"])
        return None if after is None else after - row["base_acc"]

    chance = [r for r in rows if r["epochs"] >= 2 and r["val_acc"] < 100 * CHANCE_SHARE / r["classes"]]
    # a run at chance is never healthy, even where no standard change rescues it (the issue: a doctor that
    # calls such a run healthy is wrong); it is judged in the at-chance row instead
    healthy = [r for r in rows if max(r["gains"].values()) < IMPROVE and r not in chance]
    improvable = [r for r in rows if max(r["gains"].values()) >= IMPROVE]
    flagged = [r for r in improvable if r["alarms"]]
    first = [advice_gain(r, next((a for a in r["alarms"] if a["change"]), r["alarms"][0])) for r in flagged]
    every = [advice_gain(r, a) for r in rows for a in r["alarms"]]
    measured = [g for g in every if g is not None]
    ids: dict[str, dict] = {}
    for row in rows:
        for alarm in row["alarms"]:
            entry = ids.setdefault(alarm["id"], {"fired": 0, "on_healthy": 0, "gains": []})
            entry["fired"] += 1
            entry["on_healthy"] += row in healthy
            if (gain := advice_gain(row, alarm)) is not None:
                entry["gains"].append(gain)
    return {"runs": len(rows), "healthy": len(healthy), "improvable": len(improvable),
            "false_alarms": share(sum(bool(r["alarms"]) for r in healthy), len(healthy)),
            "flagged_improvable": share(len(flagged), len(improvable)),
            "advice_helps": share(sum(g is not None and g >= HELPS for g in first), len(flagged)),
            "advice_given": len(every),
            "advice_improves": share(sum(g > 0 for g in measured), len(every)),
            "advice_worse": share(sum(g < WORSE for g in measured), len(every)),
            "advice_mean_gain": statistics.fmean(measured) if measured else None,
            "at_chance": len(chance), "chance_flagged": share(sum(bool(r["alarms"]) for r in chance), len(chance)),
            "ids": {k: {"fired": v["fired"], "on_healthy": v["on_healthy"],
                        "mean_gain": statistics.fmean(v["gains"]) if v["gains"] else None}
                    for k, v in sorted(ids.items())},
            "improvable_by": {name: sum(r["gains"][name] >= IMPROVE for r in rows) for name in rows[0]["gains"]}
            if rows else {}}


COMPARED = ("false_alarms", "flagged_improvable", "advice_helps", "advice_improves", "advice_worse", "chance_flagged")
RESAMPLES = 1000
HALVES_APART = 0.05  # the issue: the halves may differ by at most 5 points on each figure


def halves_apart(rows: list[dict], store: RunStore, seeds: range, resamples: int = RESAMPLES) -> dict:
    """Per figure: held-out minus calibration, and a 90% interval for it from a cluster bootstrap (the base
    configs of each half drawn again with replacement, each with all its seeds: the seeds of one config
    are not independent). An interval that holds 0 says the halves' difference is within what drawing
    other configs of the same kinds would give."""
    def clusters(half: str) -> list[list[dict]]:
        groups: dict[str, list[dict]] = {}
        for row in rows:
            if row["half"] == half:
                groups.setdefault(key_of(row["overrides"]), []).append(row)
        return list(groups.values())

    cal, held = clusters("calibration"), clusters("held-out")
    observed = {half: figures([r for r in rows if r["half"] == half], store, seeds) for half in ("calibration",
                                                                                               "held-out")}
    draws = random.Random(0)
    samples: dict[str, list[float]] = {key: [] for key in COMPARED}
    for _ in range(resamples):
        one = figures([r for group in draws.choices(cal, k=len(cal)) for r in group], store, seeds)
        two = figures([r for group in draws.choices(held, k=len(held)) for r in group], store, seeds)
        for key in COMPARED:
            if one[key] is not None and two[key] is not None:
                samples[key].append(two[key] - one[key])
    result = {}
    for key in COMPARED:
        a, b = observed["calibration"][key], observed["held-out"][key]
        if a is None or b is None or not samples[key]:
            continue
        values = sorted(samples[key])
        low, high = values[int(0.05 * (len(values) - 1))], values[int(0.95 * (len(values) - 1))]
        result[key] = {"difference": b - a, "low": low, "high": high, "resamples": len(values),
                       "over_bar": abs(b - a) > HALVES_APART, "holds_zero": low <= 0 <= high}
    return result


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def print_report(result: dict) -> None:
    halves = result["halves"]
    names = list(halves)
    print("\nfigure                                    " + "".join(f"{n:>13}" for n in names) + "   target")
    lines = [("runs (base run x seed)", "runs", str), ("  healthy (no change adds 2 points)", "healthy", str),
             ("  improvable by a standard change", "improvable", str),
             ("false alarms on healthy runs", "false_alarms", percent),
             ("improvable runs flagged", "flagged_improvable", percent),
             ("  whose advice helps (+1 point)", "advice_helps", percent),
             ("advice given (warning/error changes)", "advice_given", str),
             ("  that improves validation accuracy", "advice_improves", percent),
             ("  that makes it worse by 1+ point", "advice_worse", percent),
             ("  mean gain (points)", "advice_mean_gain", lambda v: "-" if v is None else f"{v:+.2f}"),
             ("runs at chance after 2+ epochs", "at_chance", str), ("  flagged", "chance_flagged", percent)]
    for label, key, show in lines:
        target = TARGETS.get(key)
        print(f"{label:<42}" + "".join(f"{show(halves[n][key]):>13}" for n in names)
              + (f"   {target[0]} {percent(target[1])}" if target else ""))
    for name in names:
        ids = halves[name]["ids"]
        if ids:
            print(f"\n{name}: finding id (fired, on healthy runs, mean gain of its advice in points)")
            for finding, entry in ids.items():
                gain = "-" if entry["mean_gain"] is None else f"{entry['mean_gain']:+.2f}"
                print(f"  {finding:<20} {entry['fired']:>4} {entry['on_healthy']:>4} {gain:>8}")
    apart = result.get("apart") or {}
    if apart:
        print(f"\nhalves apart (held-out - calibration, points; 90% interval of a cluster bootstrap over base "
              f"configs, {RESAMPLES} resamples)")
        for key, entry in apart.items():
            verdict = ("within 5 points" if not entry["over_bar"] else
                       "over 5 points, inside the noise (interval holds 0)" if entry["holds_zero"] else
                       "over 5 points, beyond the noise")
            print(f"  {key:<20} {100 * entry['difference']:+6.1f}  [{100 * entry['low']:+6.1f}, "
                  f"{100 * entry['high']:+6.1f}]  {verdict}")
    print(f"\n{result['trained']} runs trained now, {result['stored']} stored; {result['seconds'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doctor_generalization.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = the figures printed (the targets are reported beside "
                                            "them, not enforced: a partial grid has too few runs to judge).")
    parser.add_argument("--out", type=Path, default=Path("results/doctor-generalization"),
                        help="the runs and their store (default results/doctor-generalization)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per config (default 3)")
    parser.add_argument("--configs", type=int, default=2, help="base runs per (dataset, model) (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each (default 2)")
    parser.add_argument("--max-runs", type=int, default=None, help="train at most this many base and change runs")
    parser.add_argument("--evaluate", action="store_true", help="train no base or change run; diagnose again")
    parser.add_argument("--smoke", action="store_true", help="digits, fastnet and mlp, 2 changes, 1 seed")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"figures file (default {RESULTS.relative_to(RESULTS.parents[2])}; --smoke: none)")
    args = parser.parse_args(argv)
    from cnntricks.train.device import cpu_name
    if args.smoke:
        args.seeds = 1
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = datasets(args.out)
    if not args.smoke:
        build_icons(args.out / "icons")
        build_subset("fashion-mnist", args.out / "fashion-mnist.npz")
        build_subset("letters", args.out / "letters.npz")
    grid, seeds, store = plan(args, data), range(args.seeds), RunStore(args.out)
    jobs = []
    for base in sorted(grid, key=lambda b: COST.index(b["model"])):  # base by base: a partial store holds whole ones
        jobs += [(base["overrides"], s, str(args.out / "base" / f"{key_of(base['overrides'])}-s{s}")) for s in seeds]
        jobs += [(merged(base["overrides"], c), s, None) for c in change_set(args, base["overrides"]).values()
                 for s in seeds]
    print(f"doctor_generalization: {len(grid)} base runs x {args.seeds} seeds, {len(jobs)} trainings "
          f"({sum((key_of(j[0]), j[1]) in store.done for j in jobs)} done)", flush=True)
    trained = 0 if args.evaluate else train_all(jobs, store, args.workers, args.max_runs)
    rows = judge(args, grid, store, args.out)
    trained += train_all(advice_jobs(rows, seeds), store, args.workers, None)
    result = {"seeds": args.seeds, "halves": {half: figures([r for r in rows if r["half"] == half], store, seeds)
                                             for half in ("calibration", "held-out")},
              "apart": halves_apart(rows, store, seeds, 100 if args.smoke else RESAMPLES),
              "trained": trained, "stored": len(store.done), "seconds": time.perf_counter() - started,
              "cpu": cpu_name()}
    print_report(result)
    path = None if args.smoke and args.json is None else (args.json or RESULTS)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
