"""Search workers: what a second `cnntricks tune` worker buys on this machine.

The same search (--trials N of a small recipe over optim.lr and model.width, no pruning, so every
trial trains the same epochs) run twice from scratch: one worker (SQLite, every CPU thread), then
--workers 2 (Optuna's journal file, half the threads each). Printed: the wall time of each, and
their ratio. Target: two workers finish in at most 0.6x the time of one (on 2 cores: small models
do not use two threads well, so two processes of one thread should nearly halve the time).

    python benchmarks/tune_workers.py              # 8 trials of 3 epochs on 4,000 Fashion-MNIST images
    python benchmarks/tune_workers.py --smoke      # 2 tiny trials on digits, for CI

Exit status: 0 = the figures printed.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from cnntricks.train.device import cpu_name
from cnntricks.tune import tune

RECIPE = ["data.subset=4000", "train.epochs=3", "doctor.mode=off", "train.monitor=off"]
SMOKE = ["data.source=digits", "model.depth=1", "train.epochs=1", "doctor.mode=off", "train.monitor=off"]
SPACE = "optim.lr: {type: log, low: 0.03, high: 0.3}\nmodel.width: {type: int, low: 8, high: 16, step: 8}\n"
TARGET = 0.6


def timed_search(root: Path, overrides: list[str], trials: int, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    result = tune(None, overrides, root / "space.yaml", root / f"workers-{workers}", trials, workers=workers,
                  pruner="none", say=lambda message: None, worker_lines=False)
    return time.perf_counter() - started, result["counts"]["complete"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tune_workers.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8, help="trials per search (default 8)")
    parser.add_argument("--smoke", action="store_true", help="2 tiny trials on digits")
    args = parser.parse_args(argv)
    overrides = SMOKE if args.smoke else RECIPE
    trials = 2 if args.smoke else args.trials
    warnings.simplefilter("ignore")
    root = Path(tempfile.mkdtemp(prefix="tune-workers-"))
    try:
        (root / "space.yaml").write_text(SPACE)
        print(f"cpu {cpu_name()}; {trials} trials of {' '.join(overrides)}, no pruning")
        one, done_one = timed_search(root, overrides, trials, 1)
        print(f"1 worker:  {one:.2f} s ({done_one} trials)")
        two, done_two = timed_search(root, overrides, trials, 2)
        print(f"2 workers: {two:.2f} s ({done_two} trials)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_trial = (two / done_two) / (one / done_one)
    print(f"2 workers / 1 worker: {two / one:.2f}x the time, {per_trial:.2f}x per finished trial "
          f"(target at most {TARGET}x: {'met' if two / one <= TARGET else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
