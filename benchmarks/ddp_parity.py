"""Data-parallel parity: do 2 processes (PyTorch DDP under torch.distributed.run, gloo on this CPU) reach the
same test accuracy as 1 process with the same global batch?

What is measured: `cnntricks train` with the given recipe (the default one unless --overrides), once with
train.processes=1 and once with train.processes=2, for each seed, run one after the other on this machine
(1 process uses every core; 2 processes get half the cores each). Each run's summary.json gives the test
accuracy and the training seconds. Printed: a row per seed and arm, the mean test accuracy of each arm, the
difference, and the target: |2 processes - 1 process| <= 0.2 points on the mean (the issue's), with the
standard deviation over seeds beside it, so a difference can be read against the seed-to-seed spread.

Why: `optim.batch_size` is the global batch, so a config should mean the same thing on 1 or N processes.
With BatchNorm each process normalizes its own half of the batch (SyncBatchNorm is CUDA-only), a small
change of the recipe; this says whether it shows in accuracy. Speed is printed, not judged: on 2 cores
two processes share the same cores one process already uses.

    python benchmarks/ddp_parity.py                 # the default recipe, 3 seeds, both arms
    python benchmarks/ddp_parity.py --smoke         # digits, an MLP, 2 epochs, 1 seed: for CI
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnntricks.train.device import cpu_name

TARGET = 0.2  # points of mean test accuracy between 2 processes and 1
SMOKE = ("data.source=digits", "model.name=mlp", "train.epochs=2", "train.monitor=off", "doctor.mode=off")
RESULTS = Path(__file__).resolve().parent / "results" / "ddp_parity.json"


def train(overrides: list[str], seed: int, processes: int, run_dir: Path) -> dict:
    command = [sys.executable, "-m", "cnntricks", "train", *overrides, f"train.seed={seed}",
               f"train.processes={processes}", "--run-dir", str(run_dir), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ddp_parity: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"seed": seed, "processes": processes, "test_acc": summary["test_acc"],
            "train_seconds": summary["train_seconds"], "wall_seconds": time.perf_counter() - started,
            "steps": summary["steps"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ddp_parity.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"Exit status: 0 = ran (and, without --smoke, |difference| <= {TARGET} "
                                            f"points); 1 = the target not met.")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--overrides", nargs="*", default=[], help="section.key=value for both arms (default: none, "
                                                                   "the default recipe)")
    parser.add_argument("--out", type=Path, help=f"results file (default {RESULTS}; --smoke: none)")
    parser.add_argument("--smoke", action="store_true", help=f"one seed of {' '.join(SMOKE)}")
    args = parser.parse_args(argv)
    overrides = list(SMOKE) + args.overrides if args.smoke else args.overrides
    seeds = 1 if args.smoke else args.seeds
    out = args.out or (None if args.smoke else RESULTS)
    import torch
    print(f"cpu {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; recipe: "
          f"{' '.join(overrides) or 'the default'}; {seeds} seed(s)", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ddp-parity-") as scratch:
        for seed in range(seeds):
            for processes in (1, 2):
                run = train(overrides, seed, processes, Path(scratch) / f"p{processes}-s{seed}")
                runs.append(run)
                print(f"seed {seed}  {processes} process(es)  test acc {100 * run['test_acc']:.2f}%  "
                      f"train {run['train_seconds']:.1f} s  wall {run['wall_seconds']:.1f} s  {run['steps']} steps",
                      flush=True)
    arms = {p: [r["test_acc"] for r in runs if r["processes"] == p] for p in (1, 2)}
    means = {p: 100 * statistics.fmean(v) for p, v in arms.items()}
    spread = {p: 100 * statistics.stdev(v) if len(v) > 1 else 0.0 for p, v in arms.items()}
    seconds = {p: statistics.fmean(r["train_seconds"] for r in runs if r["processes"] == p) for p in (1, 2)}
    difference = means[2] - means[1]
    met = abs(difference) <= TARGET
    for p in (1, 2):
        print(f"{p} process(es): test acc {means[p]:.2f} ± {spread[p]:.2f}%, train {seconds[p]:.1f} s (mean)")
    print(f"difference 2 - 1: {difference:+.2f} points (target |difference| <= {TARGET}: {'met' if met else 'NOT MET'}); "
          f"training time ratio 2/1: {seconds[2] / seconds[1]:.2f}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "ddp_parity", "cpu": cpu_name(), "torch": torch.__version__,
                                   "overrides": overrides, "runs": runs, "means": means, "std": spread,
                                   "difference": difference, "target": TARGET, "met": met}, indent=2))
        print(f"wrote {out}")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
