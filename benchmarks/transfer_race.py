"""Does a short race predict when training from scratch beats fine-tuning? Measured on a transfer study.

For every cell and seed of a finished `cnntricks experiment transfer`, the cell's training split is cut
into two thirds (stratified, seeded) and a held-out third; `transfer.strategy=top` (fine-tuning) and
`scratch` each train on the two thirds with the study's recipe and are scored on the third (the
advisor's race, train/race.py). The race's winner is compared with the winner the study measured on
the real test split (mean over its seeds): the probes and the batch-norm statistics do not predict it
(docs/results.md, transfer); this checks that the race, which `transfer.strategy=auto` now runs, does.

    python benchmarks/transfer_race.py results/transfer                 # the study's budget: small
    python benchmarks/transfer_race.py /tmp/study --budget smoke --seeds 1
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from cnntricks import config
from cnntricks.data import load_splits
from cnntricks.experiments import transfer as study
from cnntricks.train.race import held_out_accuracy

RACERS = ("top", "scratch")


def race(cell: tuple[str, str], seed: int, budget: study.TransferBudget, folder: Path) -> dict:
    """{strategy: held-out accuracy} of the racers on the cell's training split (the advisor's race)."""
    overrides, _ = study.cell_overrides(*cell, budget, study.study_files(folder))
    cfg = config.load(None, study.common_overrides(budget) + overrides
                      + [f"train.seed={seed}", f"model.pretrained={folder / 'source'}"])
    accuracy, _, _ = held_out_accuracy(cfg, load_splits(cfg.data, seed), RACERS)
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
    for cell in study.CELLS:
        check = checks[", ".join(cell)]
        measured = "scratch" if check["best"] == "scratch" else "fine-tuning"  # which won on the test split
        for seed in range(args.seeds):
            accuracy = race(cell, seed, study.BUDGETS[args.budget], args.study)
            winner = "scratch" if accuracy["scratch"] > accuracy["top"] else "fine-tuning"
            right, total = right + (winner == measured), total + 1
            print(f"{', '.join(cell)} seed {seed}: " + ", ".join(f"{s} {100 * accuracy[s]:.1f}%" for s in RACERS)
                  + f" -> {winner}; the study's winner: {measured}", flush=True)
    print(f"the race picks the study's winner in {right} of {total} (cell, seed) pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
