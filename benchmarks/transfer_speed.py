"""Fine-tuning speed: images/s of a fine-tuning run against training the same run from scratch, and the
seconds a linear classifier of frozen features takes (issue 13's targets: ratio >= 0.95; seconds).

What is measured: a source run is trained once; then, alternating over --repeats, the same run
(`data.subset` = steps x batch images, one epoch, no TTA) trains from random weights (no
model.pretrained) and fine-tunes from the source with transfer.strategy=all (every layer, the
discriminative LRs) and =top (the head and one stage; the frozen stages need no backward pass).
Each run's summary counts images/s over its training steps only. Reported: the medians and
fine-tune / scratch; then the wall time of transfer.strategy=linear's head fit (features of every
training image once, a logistic regression) and of `cnntricks probe` (every stage).

    python benchmarks/transfer_speed.py                # 40 steps, 3 repeats, Fashion-MNIST
    python benchmarks/transfer_speed.py --smoke        # a few steps on digits, for CI
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from cnntricks import config as config_module
from cnntricks.nn.models import ImageSizeWarning
from cnntricks.session import train
from cnntricks.train.device import cpu_name

TARGET_RATIO = 0.95
SMOKE = {"steps": 3, "repeats": 1, "overrides": ["data.source=digits", "model.width=8", "optim.batch_size=32"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="transfer_speed.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Exit status: 0 = ran (and, without --smoke, fine-tune/scratch >= {TARGET_RATIO} for all); "
               "1 = ratio below target; 2 = bad usage or configuration.")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="changes to every run")
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed run (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind, alternated (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI; never fails on the target")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats, args.overrides = SMOKE["steps"], SMOKE["repeats"], SMOKE["overrides"] + args.overrides
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps and --repeats must be at least 1, got {args.steps} and {args.repeats}")
    return args


def run(overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    cfg = config_module.load(None, overrides)
    started = time.perf_counter()
    summary = train(cfg, run_dir, progress=False, report=False)
    return summary, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore", ImageSizeWarning)
    base = ["train.threads=1", "train.tta=false", "doctor.mode=off", "train.monitor=off", *args.overrides]
    try:
        batch = config_module.load(None, base).optim.batch_size
        timed = [*base, f"data.subset={args.steps * batch}", "train.epochs=1"]
        config_module.load(None, timed)
    except config_module.ConfigError as err:
        print(f"transfer_speed: configuration error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print(f"transfer_speed: fine-tuning against training from scratch{' [smoke]' if args.smoke else ''}")
    print(f"cpu {cpu_name()}, torch {torch.__version__}, 1 thread; {args.steps} steps x batch {batch} per run")
    kinds = {"scratch": [], "all": ["transfer.strategy=all"], "top": ["transfer.strategy=top"]}
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source = folder / "source"
        run([*base, "train.epochs=1", f"data.subset={args.steps * batch}"], source)
        for kind, extra in kinds.items():  # untimed warm-up of each kind
            run([*timed, *([f"model.pretrained={source}", *extra] if extra else [])], folder / f"warm-{kind}")
        for repeat in range(args.repeats):
            for kind, extra in kinds.items():
                summary, _ = run([*timed, *([f"model.pretrained={source}", *extra] if extra else [])],
                                 folder / f"{kind}-{repeat}")
                rates[kind].append(summary["images_per_second"])
            print(f"  repeat {repeat + 1}: " + ", ".join(f"{kind} {rates[kind][-1]:.0f} img/s" for kind in kinds))
        medians = {kind: statistics.median(values) for kind, values in rates.items()}
        print("median " + ", ".join(f"{kind} {value:.0f}" for kind, value in medians.items()) + " images/s")
        ratio = medians["all"] / medians["scratch"]
        met = ratio >= TARGET_RATIO
        print(f"ratio fine-tune (all)/scratch: {ratio:.3f} (target >= {TARGET_RATIO}: {'met' if met else 'not met'})")
        print(f"ratio fine-tune (top)/scratch: {medians['top'] / medians['scratch']:.3f}")
        summary, seconds = run([*base, f"model.pretrained={source}", "transfer.strategy=linear"], folder / "linear")
        fitted = next(json.loads(line) for line in (folder / "linear" / "history.jsonl").read_text().splitlines()
                      if '"head_fitted"' in line)
        print(f"linear: {fitted['message']}; the whole run {seconds:.1f} s, test accuracy "
              f"{100 * summary['test_acc']:.2f}%")
        from cnntricks.cli import main as cli_main
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its table; the time is what is measured here
            code = cli_main(["probe", f"model.pretrained={source}", *[o for o in base if not o.startswith("train.")],
                             "--json", "--out", str(folder / "probe.png")])
        print(f"probe: every stage in {time.perf_counter() - started:.1f} s (exit {code})")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
