"""Members trained for an ensemble (seed §8, "same model, different initializations"): k runs of one
config, train.seed = s, s+1, ..., all with data.split_seed = s so that they validate on the same
images (the fusion is fitted there) and train on the same ones. With folds, the k runs of a k-fold
cross-validation instead (members/fold-<i>: fold i validates; their validation images differ, so
only the fusions that fit nothing combine them). The runs go to OUT/members/seed-<n>;
a finished member (summary.json) is kept and an interrupted one continued, so a killed
`cnntricks ensemble --train` picks up where it stopped. With workers > 1 the members train in
parallel processes, each with its share of the CPU threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.ensemble.directory import MEMBERS
from cnntricks.rundir import CHECKPOINTS, CONFIG, SUMMARY


def member_configs(config_file: str | None, overrides: list[str], seeds: int, workers: int = 1, folds: bool = False
                   ) -> list[config_module.Config]:
    """The config of each member: the base seed's split for every one, its own train.seed; with `folds`,
    k-fold cross-validation members: member i validates on fold i of k = `seeds` (data.folds, data.fold)
    and trains on the others (each training image is held out by exactly one member)."""
    if seeds < 2:
        what = "--folds" if folds else "--seeds"
        raise config_module.ConfigError(f"{what} must be 2 or more (an ensemble of one is the run), got {seeds}")
    base = config_module.load(config_file, overrides)
    split_seed = base.data.split_seed if base.data.split_seed is not None else base.train.seed
    threads = None
    if workers > 1 and base.train.threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    configs = []
    for index in range(seeds):
        cfg = config_module.load(config_file, overrides)
        config_module.set_value(cfg, "train.seed", base.train.seed + index)
        config_module.set_value(cfg, "data.split_seed", split_seed)
        if folds:
            config_module.set_value(cfg, "data.folds", seeds)
            config_module.set_value(cfg, "data.fold", index)
        if threads is not None:
            config_module.set_value(cfg, "train.threads", threads)
        configs.append(cfg)
    return configs


def train_member(cfg_dict: dict, run_dir: str) -> str:
    """Train (or continue) one member; its run directory."""
    from cnntricks.session import train
    cfg = config_module.from_dict(cfg_dict)
    run = Path(run_dir)
    resume = (run / CHECKPOINTS).is_dir() and (run / CONFIG).is_file()
    train(cfg, run, resume=resume, progress=False, report=False)
    return run_dir


def train_members(configs: list[config_module.Config], out_dir: str | Path, workers: int = 1, say=print
                  ) -> list[Path]:
    """Train every member not yet finished into out_dir/members/seed-<n>; their run directories."""
    folder = Path(out_dir) / MEMBERS
    runs = [folder / (f"fold-{cfg.data.fold}" if cfg.data.folds else f"seed-{cfg.train.seed}") for cfg in configs]
    todo = [(cfg, run) for cfg, run in zip(configs, runs) if not (run / SUMMARY).is_file()]
    if len(todo) < len(runs):
        say(f"ensemble: {len(runs) - len(todo)} of {len(runs)} members already trained in {folder}")
    for run in runs:
        if run.exists() and not (run / CHECKPOINTS).is_dir():  # killed before its first checkpoint
            import shutil
            shutil.rmtree(run)
    folder.mkdir(parents=True, exist_ok=True)
    if workers <= 1 or len(todo) <= 1:
        for number, (cfg, run) in enumerate(todo, 1):
            fold = f", data.fold={cfg.data.fold} of {cfg.data.folds}" if cfg.data.folds else ""
            say(f"ensemble: training member {number} of {len(todo)} (train.seed={cfg.train.seed}{fold}) in {run}")
            train_member(cfg.to_dict(), str(run))
        return runs
    say(f"ensemble: training {len(todo)} members in {min(workers, len(todo))} processes")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_member, cfg.to_dict(), str(run)): run for cfg, run in todo}
        for number, future in enumerate(as_completed(futures), 1):
            future.result()  # a member's failure stops the ensemble with its error
            say(f"ensemble: member {number} of {len(todo)} trained: {futures[future]}")
    return runs
