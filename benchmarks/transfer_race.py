"""Does a short race predict when training from scratch beats fine-tuning? Measured on a transfer study.

For every cell and seed of a finished `cnntricks experiment transfer`, the cell's training split is cut
into two thirds (stratified, seeded) and a held-out third; `transfer.strategy=top` (fine-tuning) and
`scratch` each train on the two thirds with the study's recipe and are scored on the third. The race's
winner is compared with the winner the study measured on the real test split (mean over its seeds).
This is the candidate for the advisor's missing measure (docs/results.md, transfer): the probes and the
batch-norm statistics do not predict it.

    python benchmarks/transfer_race.py results/transfer                 # the study's budget: small
    python benchmarks/transfer_race.py /tmp/study --budget smoke --seeds 1
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from cnntricks import config
from cnntricks.data import load_splits
from cnntricks.data.split import stratified_split
from cnntricks.experiments import transfer as study
from cnntricks.session import train

RACERS = ("top", "scratch")


def race(cell: tuple[str, str], seed: int, budget: study.TransferBudget, folder: Path, scratch: Path) -> dict:
    """{strategy: held-out accuracy} of the racers on the cell's training split."""
    common = study.common_overrides(budget)
    overrides, _ = study.cell_overrides(*cell, budget, study.study_files(folder))
    train_split = load_splits(config.load(None, common + overrides).data, seed).train
    keep, held = stratified_split(train_split.labels, 1 / 3, torch.Generator().manual_seed(seed), keep_each=1)
    data = scratch / f"{'-'.join(cell)}-{seed}.npz"
    np.savez(data, x=train_split.images[keep].numpy(), y=train_split.labels[keep].numpy(),
             x_test=train_split.images[held].numpy(), y_test=train_split.labels[held].numpy(),
             classes=np.array(train_split.classes))
    recipe = [o for o in common + overrides if not o.startswith(("data.source=", "data.root=", "data.subset="))]
    accuracy = {}
    for strategy in RACERS:
        cfg = config.load(None, recipe + ["data.source=npz", f"data.root={data}", f"train.seed={seed}",
                                          f"model.pretrained={folder / 'source'}", f"transfer.strategy={strategy}"])
        run_dir = scratch / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        accuracy[strategy] = train(cfg, run_dir, progress=False)["test_acc"]
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer_race.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = printed; 2 = no finished study there.")
    parser.add_argument("study", type=Path, help="the --out folder of cnntricks experiment transfer")
    parser.add_argument("--budget", default="small", choices=sorted(study.BUDGETS), help="the study's budget")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    args = parser.parse_args(argv)
    numbers = args.study / "results.json"
    if not numbers.is_file():
        print(f"transfer_race: {numbers} is missing; run cnntricks experiment transfer first", file=sys.stderr)
        return 2
    checks = json.loads(numbers.read_text())["checks"]
    warnings.simplefilter("ignore")
    right = total = 0
    with tempfile.TemporaryDirectory() as scratch:
        for cell in study.CELLS:
            check = checks[", ".join(cell)]
            measured = "scratch" if check["best"] == "scratch" else "fine-tuning"  # which won on the test split
            for seed in range(args.seeds):
                accuracy = race(cell, seed, study.BUDGETS[args.budget], args.study, Path(scratch))
                winner = "scratch" if accuracy["scratch"] > accuracy["top"] else "fine-tuning"
                right, total = right + (winner == measured), total + 1
                print(f"{', '.join(cell)} seed {seed}: " + ", ".join(f"{s} {100 * accuracy[s]:.1f}%" for s in RACERS)
                      + f" -> {winner}; the study's winner: {measured}", flush=True)
    print(f"the race picks the study's winner in {right} of {total} (cell, seed) pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
