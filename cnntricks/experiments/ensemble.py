"""Ensembles (seed §8): at equal training, one model k times longer against k seeds, k snapshot cycles and
their weight average, the top k of a small search; late fusion against stacking and early fusion.

Per study seed s (members trained with one validation split, data.split_seed):
  - k runs of E epochs with train.seed = 100 s, ..., 100 s + k - 1: the first is "a single run", the k
    are the members of the seed ensembles, fused by mean, vote, weighted, stack and features;
  - the k runs of a k-fold cross-validation (data.folds=k, each trains on (k-1)/k of the training
    images): their mean, and a stack fitted on their out-of-fold predictions (every training image);
  - one run of k·E epochs (the same training as the k members): "one model k times longer";
  - one run of k·E epochs with schedule.name=snapshot schedule.cycles=k: the snapshot ensemble of its
    cycles (mean), and their weight average (SWA, batch-norm statistics recomputed);
  - a search (`cnntricks tune`, TPE, median pruning) of 2k trials of E epochs over optim.lr and
    optim.weight_decay, and the mean ensemble of its top k.
Test accuracy and NLL, mean ± std over study seeds; the gain over the best member of each ensemble;
the training each row cost (in units of one E-epoch run, and seconds). Papers: SWA on CIFAR-10 with
VGG-16, 93.25 -> 93.64 % (Izmailov et al. 2018); a deep ensemble of 4 WRN-28-10 on CIFAR-10,
96.0 -> 96.6 % (as the issue cites it).
"""
from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.experiments import EXPERIMENTS
from cnntricks.nn.models import ImageSizeWarning
from cnntricks.experiments.common import (Budget, budget_overrides, format_mean_std, mean_std, prepare, stderr_log,
                                          write_results)

BUDGETS = {"smoke": Budget("digits", subset=None, epochs=2, width=4, extra=("schedule.warmup_epochs=0",)),
           "small": Budget("fashion-mnist", subset=10000, epochs=6, width=16),
           "full": Budget("fashion-mnist", subset=None, epochs=12, width=32, threads=None)}
MEMBERS = {"smoke": 2, "small": 4, "full": 5}
SEARCH_SPACE = {"optim.lr": {"type": "log", "low": 0.03, "high": 0.3},
                "optim.weight_decay": {"type": "log", "low": 1e-4, "high": 2e-3}}
FUSED = ("mean", "vote", "weighted", "stack", "features")
PAPERS = {"SWA": "93.25 → 93.64 (VGG-16, CIFAR-10)", "seeds-mean": "96.0 → 96.6 (4 × WRN-28-10, CIFAR-10)"}


def run_seed(root: Path, base: list[str], k: int, epochs: int, seed: int, log) -> dict:
    """Every row's figures for one study seed: {row key: (test acc, NLL, gain or None, cost in runs, seconds)}."""
    from cnntricks.ensemble import build_ensemble
    from cnntricks.ensemble.swa import average_weights
    from cnntricks.ensemble.train import member_configs, train_members
    from cnntricks.rundir import SNAPSHOTS, read_json
    from cnntricks.session import train
    from cnntricks.tune import top_runs, tune
    quiet = lambda message: None  # noqa: E731
    rows: dict[str, tuple] = {}
    common = [*base, f"train.seed={100 * seed}", f"data.split_seed={100 * seed}"]

    started = time.perf_counter()
    runs = train_members(member_configs(None, common, k), root / "seeds", say=log)
    members_seconds = time.perf_counter() - started
    single = read_json(runs[0] / "summary.json")
    rows["single"] = (single["test_acc"], single["test_loss"], None, 1, members_seconds / k)
    for fusion in FUSED:
        summary = build_ensemble([(run, None) for run in runs], root / f"seeds-{fusion}", fusion, say=quiet)
        rows[f"seeds-{fusion}"] = (summary["test_acc"], summary["test_loss"], summary["ensemble"]["gain"], k,
                                   members_seconds)

    log(f"ensemble study: a {k}-fold cross-validation")
    started = time.perf_counter()
    folds = train_members(member_configs(None, common, k, folds=True), root / "folds", say=log)
    folds_seconds = time.perf_counter() - started
    for fusion in ("mean", "stack"):
        summary = build_ensemble([(run, None) for run in folds], root / f"folds-{fusion}", fusion, say=quiet)
        rows[f"folds-{fusion}"] = (summary["test_acc"], summary["test_loss"], summary["ensemble"]["gain"], k,
                                   folds_seconds)

    log(f"ensemble study: one run of {k * epochs} epochs")
    started = time.perf_counter()
    long = train(config_module.load(None, [*common, f"train.epochs={k * epochs}"]), root / "long", progress=False,
                 report=False)
    rows["long"] = (long["test_acc"], long["test_loss"], None, k, time.perf_counter() - started)

    log(f"ensemble study: a snapshot run of {k} cycles")
    started = time.perf_counter()
    train(config_module.load(None, [*common, f"train.epochs={k * epochs}", "schedule.name=snapshot",
                                    f"schedule.cycles={k}"]), root / "snap", progress=False, report=False)
    snap_seconds = time.perf_counter() - started
    kept = [(root / "snap", f"{SNAPSHOTS}/{p.name}") for p in sorted((root / "snap" / SNAPSHOTS).iterdir())]
    snaps = build_ensemble(kept, root / "snap-mean", "mean", say=quiet)
    rows["snapshots"] = (snaps["test_acc"], snaps["test_loss"], snaps["ensemble"]["gain"], k, snap_seconds)
    swa = average_weights(kept, root / "snap-swa", say=quiet)["test_after"]
    rows["SWA"] = (swa["acc"], swa["loss"], None, k, snap_seconds)

    log(f"ensemble study: a search of {2 * k} trials")
    import yaml
    (root / "space.yaml").write_text(yaml.safe_dump(SEARCH_SPACE))
    started = time.perf_counter()
    tune(None, common, root / "space.yaml", root / "search", 2 * k, say=quiet)
    search_seconds = time.perf_counter() - started
    trained = sum((read_json(summary) or {}).get("epochs", 0)  # pruned trials too: they stopped early
                  for summary in (root / "search" / "trials").glob("*/summary.json"))
    top = build_ensemble([(run, None) for run in top_runs(root / "search", k)], root / "search-top", "mean", say=quiet)
    rows["search-top"] = (top["test_acc"], top["test_loss"], top["ensemble"]["gain"], trained / epochs,
                          search_seconds)
    return rows


LABELS = {"single": "a single run (E epochs)", "long": "one model, k x E epochs",
          **{f"seeds-{f}": f"k seeds, {f} fusion" for f in FUSED},
          "folds-mean": "k-fold cross-validation members, mean",
          "folds-stack": "k-fold members, stacked on out-of-fold predictions",
          "snapshots": "snapshot ensemble, k cycles in k x E epochs", "SWA": "SWA of those snapshots (one model)",
          "search-top": "top k of a search of 2k trials (mean)"}


@EXPERIMENTS.register("ensemble")
def run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small", data: str | None = None) -> dict:
    """Ensembles (seed §8): k seeds, snapshots, SWA, a search's top k and the fusions, at equal training."""
    out_dir, size = prepare(out_dir, budget, BUDGETS)
    k = MEMBERS[budget]
    base = budget_overrides(size, data) + ["doctor.mode=off", "train.monitor=off"]
    (out_dir / "configs").mkdir(exist_ok=True)  # the first seed's configs of the trained rows
    for name, extra in {"member": [], "long": [f"train.epochs={k * size.epochs}"],
                        "snapshot": [f"train.epochs={k * size.epochs}", "schedule.name=snapshot",
                                     f"schedule.cycles={k}"]}.items():
        config_module.save(config_module.load(None, [*base, f"train.seed={100 * seed}",
                                                     f"data.split_seed={100 * seed}", *extra]),
                           out_dir / "configs" / f"{name}.yaml")
    per_seed = []
    for s in range(seed, seed + seeds):
        root = out_dir / "runs" / f"seed{s}"
        if root.exists():  # a study re-run into the same folder replaces its runs
            shutil.rmtree(root)
        started = time.perf_counter()
        with warnings.catch_warnings():  # the study chose 28x28 on purpose: no power-of-2 warning per run
            warnings.simplefilter("ignore", ImageSizeWarning)
            per_seed.append(run_seed(root, base, k, size.epochs, s, stderr_log))
        stderr_log(f"ensemble study: seed {s} took {time.perf_counter() - started:.0f} s")
    header = ["members / training", "test acc. %", "test NLL", "gain over its best member (points)",
              "training (E-epoch runs)", "seconds", "papers (acc. %)"]
    table = []
    for key, label in LABELS.items():
        values = [rows[key] for rows in per_seed]
        gains = [100 * v[2] for v in values if v[2] is not None]
        table.append([label, format_mean_std([100 * v[0] for v in values]),
                      format_mean_std([v[1] for v in values], 4), format_mean_std(gains) if gains else "—",
                      f"{mean_std([v[3] for v in values])[0]:.1f}", f"{mean_std([v[4] for v in values])[0]:.0f}",
                      PAPERS.get(key, "—")])
    means = {key: mean_std([100 * rows[key][0] for rows in per_seed])[0] for key in LABELS}
    best_seed = max((key for key in LABELS if key.startswith(("seeds-", "folds-"))), key=lambda key: means[key])
    notes = [f"k = {k} members, E = {size.epochs} epochs; {data or size.source}"
             f"{f', {size.subset} training images' if size.subset else ''}, `fastnet` width {size.width}.",
             f"Best of the seed and fold ensembles: {LABELS[best_seed]}, {means[best_seed]:.2f}% against a single run's "
             f"{means['single']:.2f}% and one k-times-longer run's {means['long']:.2f}%.",
             "Gain: the ensemble's test accuracy minus its best member's (the single run is member 0 of the seeds).",
             "Runs: `runs/seed<k>/` (seeds/members/, folds/members/, long/, snap/, search/trials/, and each "
             "ensemble's directory); "
             "configs: member, long and snapshot of the first seed."]
    return write_results(out_dir, name="ensemble", title="Ensembles (seed §8)", notes=notes, header=header,
                         rows=table, results={}, budget=budget, seed=seed, seeds=seeds, data=data, figures={},
                         extra={"per_seed": [{key: list(v) for key, v in rows.items()} for rows in per_seed],
                                "k": k, "epochs": size.epochs,
                                "means": {key: None if math.isnan(v) else v for key, v in means.items()}})
