"""The accuracy frontier: Fashion-MNIST test accuracy against seconds of training, for the budget recipes
(`configs/budget-*.yaml`, train.time_budget), the hand-written expert loop given the same seconds
(benchmarks/expert_loop.py) and the seed's literal advice (`configs/seed.yaml`, its own length).

Each point is --seeds seeds (mean ± std) run one after another in this process's machine, nothing else
computing beside them: the time of a budget run is its loop (steps, validation, checkpoints: summary.json's
loop_seconds), the expert's from its first step to its last. It prints the CPU model (figures differ about 2x
between a CPU with AMX and one without) and how closely each budget was met, and draws docs/images/frontier.png.

    python benchmarks/frontier.py                             # budgets 60, 300, 900 s and seed.yaml, 3 seeds
    python benchmarks/frontier.py --budgets 60 300 --seeds 1 --no-seed-recipe
    python benchmarks/frontier.py --smoke                     # 2,000 images, 4 and 8 s budgets, 1 seed (CI)

Runs are kept in --out/runs.jsonl, so a stopped benchmark resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import expert_loop  # noqa: E402

from runs_file import keep_run, read_runs  # noqa: E402

from cnntricks.train.device import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "frontier"
FIGURE = ROOT / "docs" / "images" / "frontier.png"
BUDGET_TOLERANCE = 0.05  # the target: training time within 5% of the budget
MARGIN = 1.0             # points above the expert loop at the same seconds (target)
TARGETS = {60: 93.0, 300: 94.0, 900: 95.0}


def recipe_for(budget: float) -> str:
    """The name of the recipe `cnntricks train train.time_budget=BUDGET` trains (configs/<name>.yaml)."""
    from cnntricks.train import budget as planning
    return planning.recipe_for(budget)[0]


def train_recipe(config_path: Path | None, overrides: list[str], seed: int, without_tta: bool = False) -> dict:
    """One run's test accuracy, training seconds, steps and epochs; `without_tta`: also the same model's test
    accuracy without flip TTA (test_acc_no_tta; TTA costs no training, so removing it needs no run of its own)."""
    warnings.simplefilter("ignore")
    from cnntricks import config
    from cnntricks.session import train
    cfg = config.load(config_path, [*overrides, f"train.seed={seed}", "doctor.mode=off"])
    with tempfile.TemporaryDirectory(prefix="frontier-") as scratch:
        run = Path(scratch) / "run"
        summary = train(cfg, run, progress=False, report=False)
        record = {"test_acc": summary["test_acc"], "seconds": summary["loop_seconds"], "steps": summary["steps"],
                  "epochs": summary["epochs"], "time_budget": summary["time_budget"]}
        if without_tta:
            from cnntricks.data import load_splits
            from cnntricks.train.inference import load_predictor
            loaded = load_predictor(run, ["train.tta=false"])
            test = load_splits(loaded.cfg.data, loaded.cfg.train.seed).test
            record["test_acc_no_tta"] = loaded.predictor.evaluate(test)["acc"]
    return record


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def draw(points: dict[str, list[dict]], cpu: str, path: Path, budgets: list[float]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name, rows in points.items():
        rows = sorted(rows, key=lambda r: r["seconds"])
        axes.errorbar([r["seconds"] for r in rows], [r["test"] for r in rows], yerr=[r["std"] for r in rows],
                      marker="o", capsize=3, label=name)
    axes.set_xscale("log")
    axes.set_xticks(budgets, [f"{b:g} s" for b in budgets])  # the points sit at the seconds measured
    axes.minorticks_off()
    axes.set_xlabel("training seconds (2 CPU cores)")
    axes.set_ylabel("Fashion-MNIST test accuracy (%)")
    axes.set_title(f"Accuracy frontier, {cpu}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frontier.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = ran; the targets are printed, met or not.")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 300, 900], help="seconds (default 60 300 900)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    parser.add_argument("--no-seed-recipe", action="store_true", help="leave configs/seed.yaml out (30 epochs)")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS}; --smoke: a temporary one)")
    parser.add_argument("--figure", type=Path, help=f"the picture (default {FIGURE}; --smoke: in --out)")
    parser.add_argument("--smoke", action="store_true", help="2,000 training images, 4 and 8 s, 1 seed, seed.yaml "
                                                             "for 1 epoch")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    context = tempfile.TemporaryDirectory(prefix="frontier-") if args.smoke and not args.out else None
    out = Path(context.name) if context else (args.out or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    budgets, seeds = ([4.0, 8.0], 1) if args.smoke else (args.budgets, args.seeds)
    subset = 2000 if args.smoke else None
    data = [f"data.subset={subset}"] if subset else []
    store = out / "runs.jsonl"
    done = read_runs(store, lambda r: (r["arm"], r["budget"], r["seed"]))
    cpu = cpu_name()
    print(f"cpu {cpu}; budgets {', '.join(f'{b:g}' for b in budgets)} s; {seeds} seed(s)", flush=True)

    def run(arm: str, budget: float | None, seed: int, work) -> dict:
        key = (arm, budget, seed)
        if key not in done:
            started = time.perf_counter()
            record = {"arm": arm, "budget": budget, "seed": seed, **work(), "wall": time.perf_counter() - started}
            keep_run(store, record)
            done[key] = record
            print(f"  {arm} {'' if budget is None else f'{budget:g} s '}seed {seed}: test {100 * record['test_acc']:.2f}%,"
                  f" {record['seconds']:.1f} s of training, {record['steps']} steps", flush=True)
        return done[key]

    for budget in budgets:  # train what is asked for and not kept yet
        recipe = recipe_for(budget)
        path = ROOT / "configs" / f"{recipe}.yaml"
        for s in range(seeds):
            run(recipe, budget, s, lambda s=s: train_recipe(path, [*data, f"train.time_budget={budget:g}"], s))
            run("expert", budget, s, lambda s=s: expert_loop.train(budget, s, subset))
    # the figures: every budget kept in --out (earlier calls' too), with every seed kept of it
    points: dict[str, list[dict]] = {}
    rows = []
    for budget in sorted({key[1] for key in done if key[1] is not None}):
        recipe = recipe_for(budget)
        ours = [r for (arm, b, _), r in sorted(done.items()) if arm == recipe and b == budget]
        expert = [r for (arm, b, _), r in sorted(done.items()) if arm == "expert" and b == budget]
        if not ours or not expert:
            continue
        row = {"budget": budget, "recipe": recipe, "seeds": len(ours)}
        for name, runs in (("cnntricks", ours), ("expert", expert)):
            test, std = stats([100 * r["test_acc"] for r in runs])
            seconds, _ = stats([r["seconds"] for r in runs])
            row[name] = {"test": test, "std": std, "seconds": seconds, "seeds": len(runs),
                         "budget_error": max(abs(r["seconds"] - budget) / budget for r in runs)}
            points.setdefault("cnntricks budget recipes" if name == "cnntricks" else "expert loop", []).append(
                {"seconds": seconds, "test": test, "std": std})
        row["margin"] = row["cnntricks"]["test"] - row["expert"]["test"]
        rows.append(row)
    if not args.no_seed_recipe:
        overrides = [*data, *(["train.epochs=1"] if args.smoke else [])]
        seed_runs = [run("seed.yaml", None, s, lambda s=s: train_recipe(ROOT / "configs" / "seed.yaml", overrides, s))
                     for s in range(seeds)]
        test, std = stats([100 * r["test_acc"] for r in seed_runs])
        seconds, _ = stats([r["seconds"] for r in seed_runs])
        points["configs/seed.yaml"] = [{"seconds": seconds, "test": test, "std": std}]
        print(f"configs/seed.yaml: {test:.2f} ± {std:.2f}% in {seconds:.0f} s of training", flush=True)
    print(f"{'budget':>8}  {'recipe':<14} {'cnntricks':>16} {'expert loop':>16} {'margin':>7}  seeds  budget met within")
    for row in rows:
        ours, expert = row["cnntricks"], row["expert"]
        target = TARGETS.get(int(row["budget"]))
        print(f"{row['budget']:>7g}s  {row['recipe']:<14} {ours['test']:>7.2f} ± {ours['std']:.2f}% "
              f"{expert['test']:>7.2f} ± {expert['std']:.2f}% {row['margin']:>+6.2f}  {row['seeds']:>5}  "
              f"{100 * ours['budget_error']:.1f}% ({'met' if ours['budget_error'] <= BUDGET_TOLERANCE else 'NOT MET'}"
              f" <= 5%); margin >= {MARGIN:g}: {'met' if row['margin'] >= MARGIN else 'NOT MET'}"
              + (f"; >= {target:g}%: {'met' if ours['test'] >= target else 'NOT MET'}" if target and not args.smoke else ""))
    figure = args.figure or (out / "frontier.png" if args.smoke else FIGURE)
    draw(points, cpu, figure, [row["budget"] for row in rows])
    print(f"figure: {figure}")
    if not args.smoke:
        (out / "summary.json").write_text(json.dumps({"cpu": cpu, "seeds": seeds, "rows": rows, "points": points},
                                                     indent=2))
        print(f"wrote {out / 'summary.json'}")
    if context:
        context.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
