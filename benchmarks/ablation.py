"""Which tricks matter at a time budget: each budget recipe (`configs/budget-*.yaml`) trained at its
train.time_budget, and again without each of its tricks at the same budget, on Fashion-MNIST. The change in
test accuracy is what the trick adds when time, not epochs, is what is fixed: a trick that costs speed (a
wider model, fp32) is paid for in steps.

The tricks removed are read from the recipe itself: flips and crops (augment.policy), a model wider than the
default's 16, label smoothing, the warm-up, cosine decay (a constant LR instead), weight decay, bf16 autocast
with channels_last (where this CPU runs bf16), per-channel standardization, and flip TTA (scored on the
recipe's own runs with TTA off: it costs no training). Runs go one after another, nothing else computing
beside them (a budget run trains fewer steps on a busy machine).

    python benchmarks/ablation.py --budgets 60 --seeds 2     # the 1-minute recipe and its 7 ablations, 2 seeds
    python benchmarks/ablation.py --budgets 300 --seeds 1
    python benchmarks/ablation.py --budgets 900 --only width crops
    python benchmarks/ablation.py --smoke                    # 2,000 images, a 4 s budget, 1 seed (CI)

Runs are kept in --out/runs.jsonl (a stopped benchmark resumes where it stopped); the table covers every
budget kept there, and the figure is docs/images/ablation.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontier import ROOT, recipe_for, save_figure, stats, train_recipe  # noqa: E402
from runs_file import keep_run, read_runs  # noqa: E402

from cnntricks.train.device import cpu_name  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ablation"
FIGURE = ROOT / "docs" / "images" / "ablation.png"
RECIPE = "recipe"          # the arm that removes nothing
TTA = "tta"                # scored on the recipe's runs


def arms(budget: float) -> dict[str, tuple[str, list[str]]]:
    """{key: (what is removed, the overrides that remove it)} for the recipe of `budget`, read from the recipe."""
    from cnntricks import config
    from cnntricks.train.inference import device_and_precision
    cfg = config.load(ROOT / "configs" / f"{recipe_for(budget)}.yaml", [])
    found: dict[str, tuple[str, list[str]]] = {RECIPE: ("nothing (the recipe)", [])}
    policy = cfg.augment.policy
    if policy != "none":
        found["augment"] = (f"augmentation ({policy})", ["augment.policy=none"])
    if policy == "standard":
        found["crops"] = ("random crops (flips kept)", ["augment.policy=flip"])
    if cfg.model.width != 16:
        found["width"] = (f"width {cfg.model.width} (16 instead)", ["model.width=16"])
    if cfg.optim.label_smoothing:
        found["smoothing"] = (f"label smoothing {cfg.optim.label_smoothing:g}", ["optim.label_smoothing=0"])
    if cfg.schedule.warmup_epochs:
        found["warmup"] = ("warm-up", ["schedule.warmup_epochs=0"])
    if cfg.schedule.name in ("cosine", "onecycle"):
        found["decay"] = (f"{cfg.schedule.name} decay (constant LR)", ["schedule.name=constant"])
    if cfg.optim.weight_decay:
        found["decay_weights"] = (f"weight decay {cfg.optim.weight_decay:g}", ["optim.weight_decay=0"])
    if device_and_precision(cfg)[1] == "bf16":
        found["bf16"] = ("bf16 + channels_last (fp32)", ["train.precision=fp32", "train.channels_last=false"])
    if cfg.preprocess.normalize != "none":
        found["standardize"] = (f"{cfg.preprocess.normalize} (raw pixels)", ["preprocess.normalize=none"])
    return found


def table(done: dict, budget: float) -> list[dict]:
    """One row per arm of `budget` with runs kept: mean ± std, and the change against the recipe (the seeds both
    have, so a missing seed does not tilt it)."""
    runs = {arm: {seed: r for (a, b, seed), r in done.items() if a == arm and b == budget}
            for arm in {a for (a, b, _) in done if b == budget}}
    recipe = runs.get(RECIPE, {})
    if recipe and all("test_acc_no_tta" in r for r in recipe.values()):
        runs[TTA] = {seed: {**r, "test_acc": r["test_acc_no_tta"]} for seed, r in recipe.items()}
    names = {**{key: label for key, (label, _) in arms(budget).items()}, TTA: "flip TTA (scored without)"}
    rows = []
    for arm, by_seed in runs.items():
        test, std = stats([100 * r["test_acc"] for r in by_seed.values()])
        both = sorted(set(by_seed) & set(recipe))
        change, change_std = (stats([100 * (by_seed[s]["test_acc"] - recipe[s]["test_acc"]) for s in both])
                              if both and arm != RECIPE else (None, None))
        rows.append({"arm": arm, "removed": names.get(arm, arm), "test": test, "std": std, "change": change,
                     "change_std": change_std, "seeds": len(by_seed), "steps": stats([r["steps"] for r in by_seed.values()])[0],
                     "seconds": stats([r["seconds"] for r in by_seed.values()])[0]})
    return sorted(rows, key=lambda row: (row["change"] is not None, row["change"] or 0.0))


def draw(tables: dict[float, list[dict]], cpu: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    budgets = [b for b, rows in tables.items() if any(r["change"] is not None for r in rows)]
    if not budgets:
        return
    figure, panels = plt.subplots(1, len(budgets), figsize=(4.6 * len(budgets), 3.8), squeeze=False)
    for axes, budget in zip(panels[0], budgets):
        rows = [r for r in tables[budget] if r["change"] is not None][::-1]
        gains = [-r["change"] for r in rows]  # what the trick adds: the recipe minus the recipe without it
        axes.barh([r["removed"].split(" (")[0] for r in rows], gains, xerr=[r["change_std"] for r in rows],
                  capsize=3, color=["tab:green" if g > 0 else "tab:red" for g in gains])
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_title(f"{budget:g} s ({recipe_for(budget)})", fontsize=10)
        axes.set_xlabel("points the trick adds (test %)")
        axes.tick_params(axis="y", labelsize=8)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(f"What each trick adds at a time budget, Fashion-MNIST, {cpu}", fontsize=10)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = ran (the table is printed); 2 = an unknown --only.")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 300], help="seconds (default 60 300)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per arm (default 2)")
    parser.add_argument("--only", nargs="+", metavar="ARM", help="train only these arms (and the recipe): "
                        "augment crops width smoothing warmup decay decay_weights bf16 standardize")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS}; --smoke: a temporary one)")
    parser.add_argument("--figure", type=Path, help=f"the picture (default {FIGURE}; --smoke: in --out)")
    parser.add_argument("--smoke", action="store_true", help="2,000 training images, a 4 s budget, 1 seed")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    context = tempfile.TemporaryDirectory(prefix="ablation-") if args.smoke and not args.out else None
    out = Path(context.name) if context else (args.out or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    budgets, seeds = ([4.0], 1) if args.smoke else (args.budgets, args.seeds)
    data = ["data.subset=2000"] if args.smoke else []
    store = out / "runs.jsonl"
    done = read_runs(store, lambda r: (r["arm"], r["budget"], r["seed"]))
    cpu = cpu_name()
    print(f"cpu {cpu}; budgets {', '.join(f'{b:g}' for b in budgets)} s; {seeds} seed(s)", flush=True)
    for budget in budgets:
        chosen = arms(budget)
        unknown = set(args.only or []) - set(chosen)
        if unknown:
            print(f"--only: {budget:g} s's recipe has no {', '.join(sorted(unknown))}; "
                  f"it has {', '.join(k for k in chosen if k != RECIPE)}", file=sys.stderr)
            return 2
        path = ROOT / "configs" / f"{recipe_for(budget)}.yaml"
        for seed in range(seeds):
            for arm, (label, overrides) in chosen.items():
                if (arm, budget, seed) in done or (args.only and arm != RECIPE and arm not in args.only):
                    continue
                record = {"arm": arm, "budget": budget, "seed": seed,
                          **train_recipe(path, [*data, *overrides, f"train.time_budget={budget:g}"], seed,
                                         without_tta=arm == RECIPE)}
                keep_run(store, record)
                done[(arm, budget, seed)] = record
                print(f"  {budget:g} s seed {seed} without {label}: test {100 * record['test_acc']:.2f}%, "
                      f"{record['seconds']:.1f} s, {record['steps']} steps", flush=True)
    tables = {budget: table(done, budget) for budget in sorted({b for (_, b, _) in done})}
    for budget, rows in tables.items():
        print(f"\n{budget:g} s, {recipe_for(budget)}: test accuracy without each trick (change against the recipe)")
        print(f"  {'removed':<36} {'test %':>15} {'change (± over seeds)':>21} {'steps':>7} seeds")
        for row in rows:
            change = "" if row["change"] is None else f"{row['change']:+.2f} ± {row['change_std']:.2f}"
            print(f"  {row['removed']:<36} {row['test']:>7.2f} ± {row['std']:.2f} {change:>21} {row['steps']:>7.0f}"
                  f" {row['seeds']:>5}")
    figure = args.figure or (out / "ablation.png" if args.smoke else FIGURE)
    draw(tables, cpu, figure)
    print(f"\nfigure: {figure}")
    if not args.smoke:
        (out / "summary.json").write_text(json.dumps({"cpu": cpu, "tables": {f"{b:g}": rows for b, rows in
                                                                             tables.items()}}, indent=2))
        print(f"wrote {out / 'summary.json'}")
    if context:
        context.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
