"""Does the default recipe fit the user's data? `cnntricks train` with no train.epochs on data sets of
different sizes, against the best of a small sweep on each.

The default recipe was tuned on Fashion-MNIST's 54,000 training images (12 epochs, 421 steps each). On a small
data set 12 epochs are a few dozen steps; the default plans at least train.min_steps steps instead. This
benchmark trains, on each data set, the default (no train.epochs: the plan) and a small sweep (train.epochs
over SWEEP_EPOCHS at the default LR (on the full set, 24: its default, 12, is the default's run), and the LR
x0.5 and x2 at the plan's epochs), for --seeds seeds each,
and prints the default's test accuracy against the sweep's best (by mean validation accuracy; the target:
the default within 2 points of it on every data set).

    python benchmarks/default_fit.py                          # digits, icons, fashion-2000, fashion
    python benchmarks/default_fit.py --datasets digits icons  # some of them
    python benchmarks/default_fit.py --smoke                  # digits, the default and 12 epochs, 1 seed (CI)

Runs are kept in --out/runs.jsonl (one line per run), so a stopped benchmark resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doctor_generalization import build_icons  # noqa: E402  (the icon-theme data set, built once)

from runs_file import keep_run, read_runs  # noqa: E402

from cnntricks.train.device import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "default_fit"
MAX_GAP = 2.0  # points of test accuracy the default may trail the sweep's best by (issue target)
SWEEP_EPOCHS = (12, 25, 50, 100, 200)
LR_FACTORS = (0.5, 2.0)
FASHION_EPOCHS = (24,)  # the full set: 421 steps an epoch, the default's own ground (12 epochs: the default)


ICONS = Path.home() / ".cache" / "cnntricks" / "benchmarks" / "icons"  # built once from the installed icon themes


def datasets(icons: Path) -> dict[str, dict[str, str]]:
    return {"digits": {"data.source": "digits"},
            "icons": {"data.source": "image-folder", "data.root": str(icons), "data.image_size": "32"},
            "fashion-2000": {"data.source": "fashion-mnist", "data.subset": "2000"},
            "fashion": {"data.source": "fashion-mnist"}}


def arms(name: str, plan_epochs: int) -> dict[str, dict[str, str]]:
    """The default (no train.epochs) and the sweep's points, by name."""
    grid = {"default": {}}
    for epochs in (FASHION_EPOCHS if name == "fashion" else SWEEP_EPOCHS):
        grid[f"epochs={epochs}"] = {"train.epochs": str(epochs)}
    for factor in LR_FACTORS:
        grid[f"lr x{factor:g}, epochs={plan_epochs}"] = {"train.epochs": str(plan_epochs), "optim.lr": f"{0.1 * factor:g}"}
    return grid


def train_one(overrides: dict[str, str], seed: int) -> dict:
    warnings.simplefilter("ignore")
    from cnntricks import config
    from cnntricks.session import train
    cfg = config.load(None, [f"{k}={v}" for k, v in overrides.items()] + [f"train.seed={seed}"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="default-fit-") as scratch:
        summary = train(cfg, Path(scratch) / "run", progress=False, report=False)
    return {"test_acc": summary["test_acc"], "val_acc": summary["val_acc"], "epochs": summary["epochs"],
            "steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "seconds": time.perf_counter() - started}


def plan_epochs(overrides: dict[str, str]) -> tuple[int, int]:
    """(epochs, steps per epoch) the default plans for this data set."""
    from cnntricks import config
    from cnntricks.data import load_splits
    from cnntricks.train.budget import planned_epochs, steps_per_epoch
    from cnntricks.train.inference import describe_data
    cfg = config.load(None, [f"{k}={v}" for k, v in overrides.items()])
    data = describe_data(load_splits(cfg.data, cfg.train.seed))
    epochs, _, _ = planned_epochs(cfg, data)
    return epochs, steps_per_epoch(sum(data["train_counts"]), cfg.optim.batch_size)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="default_fit.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = ran (without --smoke: the default within 2 points of "
                                            "the sweep's best everywhere); 1 = not.")
    parser.add_argument("--datasets", nargs="+", default=["digits", "icons", "fashion-2000", "fashion"],
                        choices=["digits", "icons", "fashion-2000", "fashion"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS}; --smoke: a temporary one)")
    parser.add_argument("--only", choices=["default", "sweep"], help="train only these arms (the others' kept runs are still reported)")
    parser.add_argument("--smoke", action="store_true", help="digits, the default and one sweep point, 1 seed, "
                                                             "train.min_steps=200")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    context = tempfile.TemporaryDirectory(prefix="default-fit-") if args.smoke else None
    out = Path(context.name) if context else (args.out or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    names, seeds = (["digits"], 1) if args.smoke else (args.datasets, args.seeds)
    store = out / "runs.jsonl"
    done = read_runs(store, lambda r: (r["dataset"], r["arm"], r["seed"]))
    print(f"cpu {cpu_name()}; data sets {', '.join(names)}; {seeds} seed(s)", flush=True)
    rows, met = [], True
    for name in names:
        data = datasets(ICONS)[name]
        if name == "icons":
            build_icons(ICONS)
        extra = {"train.min_steps": "200"} if args.smoke else {}
        epochs, per_epoch = plan_epochs({**data, **extra})
        grid = arms(name, epochs)
        if args.smoke:
            grid = {key: grid[key] for key in ("default", "epochs=12")}
        print(f"{name}: {per_epoch} steps an epoch; the default plans {epochs} epochs ({epochs * per_epoch:,} steps)",
              flush=True)
        results = {}
        for arm, overrides in grid.items():
            train_it = not args.only or (arm == "default") == (args.only == "default")
            for seed in range(seeds):
                key = (name, arm, seed)
                if key not in done and not train_it:  # --only: the other arms as kept, where they are
                    continue
                if key not in done:
                    record = {"dataset": name, "arm": arm, "seed": seed,
                              **train_one({**data, **extra, **overrides, "train.threads": "2"}, seed)}
                    keep_run(store, record)
                    done[key] = record
                    print(f"  {arm}, seed {seed}: test {100 * record['test_acc']:.2f}%, {record['steps']} steps, "
                          f"{record['train_seconds']:.1f} s", flush=True)
                results.setdefault(arm, []).append(done[key])
        summary = {arm: {"test": 100 * mean([r["test_acc"] for r in runs]),
                         "test_std": 100 * (statistics.stdev([r["test_acc"] for r in runs]) if len(runs) > 1 else 0.0),
                         "val": 100 * mean([r["val_acc"] for r in runs]), "steps": runs[0]["steps"],
                         "train_seconds": mean([r["train_seconds"] for r in runs])} for arm, runs in results.items()}
        sweep = {arm: figures for arm, figures in summary.items() if arm != "default"}
        if "default" in summary and sweep:
            best = max(sweep, key=lambda arm: sweep[arm]["val"])
            gap = summary[best]["test"] - summary["default"]["test"]
            met &= gap <= MAX_GAP
            rows.append({"dataset": name, "default": summary["default"], "best_arm": best, "best": summary[best],
                         "gap": gap, "arms": summary})
            print(f"{name}: default {summary['default']['test']:.2f} ± {summary['default']['test_std']:.2f}% "
                  f"({summary['default']['steps']} steps); sweep's best ({best}, by validation) "
                  f"{summary[best]['test']:.2f} ± {summary[best]['test_std']:.2f}%: gap {gap:+.2f} points "
                  f"(<= {MAX_GAP:g}: {'met' if gap <= MAX_GAP else 'NOT MET'})", flush=True)
    if not args.smoke:
        (out / "summary.json").write_text(json.dumps({"cpu": cpu_name(), "seeds": seeds, "rows": rows}, indent=2))
        print(f"wrote {out / 'summary.json'}")
    if context:
        context.cleanup()
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
