"""Ensemble gain (seed §8): K seeds of the default recipe against their best member, a snapshot ensemble
of one run at 1/K of that training, and what predicting with an ensemble costs.

What is measured (the issue's targets are printed beside the figures, not enforced):
  1. K runs (--seeds, default 5) of the default recipe (`cnntricks train` on Fashion-MNIST; --set
     changes keys) with train.seed = 0..K-1 and one validation split (data.split_seed = 0), as
     `cnntricks ensemble --train` trains them, and their mean ensemble: test accuracy and NLL of each
     member, the best member and the ensemble. Target: the ensemble beats its best member by 0.4+
     points with a lower NLL.
  2. One run of the same recipe and epochs with schedule.name=snapshot schedule.cycles=K (1/K of the
     seeds' training), the mean ensemble of its K snapshots. Target: it recovers half or more of the
     seeds' gain. The gain of each is measured over the mean member (what one run of that cost scores
     on average); over the best member too for the seeds.
     The snapshots' weight average (SWA, batch-norm statistics recomputed) is printed beside them.
  3. `predict` on --images test images as PNG files: the ensemble of K (load, decode once per input
     size, one batched pass per member) against one run (load, decode, one pass), median of 3.
     Target: at most 5.5x for K = 5.

    python benchmarks/ensemble_gain.py                       # 5 seeds of the default recipe: minutes per run
    python benchmarks/ensemble_gain.py --smoke               # digits, 2 tiny seeds, for CI
    python benchmarks/ensemble_gain.py --json benchmarks/results/ensemble_gain.json

Exit status: 0 = the figures printed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.ensemble import build_ensemble, load_ensemble
from cnntricks.ensemble.train import member_configs, train_members
from cnntricks.rundir import SNAPSHOTS, read_json
from cnntricks.train.device import cpu_name

SMOKE = ["data.source=digits", "model.width=4", "model.depth=1", "train.epochs=2", "schedule.warmup_epochs=0",
         "train.threads=1"]
TARGET_GAIN, TARGET_SNAPSHOT_SHARE, TARGET_PREDICT = 0.004, 0.5, 5.5


def quiet(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def predict_seconds(path: Path, files: list[Path], ensemble: bool) -> float:
    """Seconds of what `cnntricks predict` does: load, decode the files, predict (median of 3)."""
    import torch

    from cnntricks.data import load_images
    from cnntricks.train.inference import load_predictor
    times = []
    for _ in range(3):
        start = time.perf_counter()
        if ensemble:
            load_ensemble(path).predict_files(files)
        else:
            loaded = load_predictor(path)
            data = loaded.data
            images = load_images(files, data["channels"], (data["height"], data["width"]))
            torch.softmax(loaded.predictor.logits(images), 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_pngs(folder: Path, count: int, run: Path) -> list[Path]:
    from PIL import Image

    from cnntricks.data import load_splits
    cfg = config_module.load(run / "config.yaml")
    test = load_splits(cfg.data, cfg.train.seed).test
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(min(count, len(test))):
        image = test.images[index]
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        files.append(folder / f"{index:05d}.png")
        Image.fromarray(array).save(files[-1])
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ensemble_gain.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="members and snapshot cycles (default 5)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides of the recipe")
    parser.add_argument("--images", type=int, default=2000, help="PNG files predicted (default 2000)")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="digits, 2 tiny members, 50 images")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.smoke:
        args.seeds, args.images = 2, 50
        overrides = SMOKE + overrides
    root = args.out or Path(tempfile.mkdtemp(prefix="ensemble-gain-"))
    warnings.simplefilter("ignore")
    base = config_module.load(None, overrides)
    print(f"cpu {cpu_name()}; recipe: the default{' with ' + ' '.join(overrides) if overrides else ''} "
          f"({base.data.source}, {base.model.name}, {base.train.epochs} epochs); {args.seeds} seeds")
    try:
        started = time.perf_counter()
        runs = train_members(member_configs(None, overrides + ["doctor.mode=off"], args.seeds), root / "seeds",
                             say=quiet)
        seeds_seconds = time.perf_counter() - started
        seeds = build_ensemble([(run, None) for run in runs], root / "seeds", "mean", say=quiet, members_inside=True)

        started = time.perf_counter()
        from cnntricks.session import train
        snapshot_cfg = config_module.load(None, overrides + ["doctor.mode=off", "schedule.name=snapshot",
                                                             f"schedule.cycles={args.seeds}", "data.split_seed=0"])
        quiet(f"training the snapshot run ({args.seeds} cycles) in {root / 'snap'}")
        train(snapshot_cfg, root / "snap", progress=False, report=False)
        snapshot_seconds = time.perf_counter() - started
        kept = sorted(p.name for p in (root / "snap" / SNAPSHOTS).iterdir())
        snaps = build_ensemble([(root / "snap", f"{SNAPSHOTS}/{name}") for name in kept], root / "snap-ensemble",
                               "mean", say=quiet)

        from cnntricks.ensemble.swa import average_weights
        swa = average_weights([(root / "snap", f"{SNAPSHOTS}/{name}") for name in kept], root / "snap-swa", say=quiet)
        files = write_pngs(root / "png", args.images, runs[0])
        single, many = predict_seconds(runs[0], files, False), predict_seconds(root / "seeds", files, True)
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)

    info = seeds["ensemble"]
    mean_member = info["mean_member_acc"]
    best_loss = min(m["loss"] for m in info["members"])
    print(f"\n{'':<28}{'test acc.':>10}{'NLL':>9}")
    for member in info["members"]:
        print(f"{'seed member ' + member['name']:<28}{100 * member['acc']:>9.2f}%{member['loss']:>9.4f}")
    print(f"{'seed ensemble (mean)':<28}{100 * seeds['test_acc']:>9.2f}%{seeds['test_loss']:>9.4f}")
    for member in snaps["ensemble"]["members"]:
        print(f"{'snapshot ' + member['name']:<28}{100 * member['acc']:>9.2f}%{member['loss']:>9.4f}")
    print(f"{'snapshot ensemble (mean)':<28}{100 * snaps['test_acc']:>9.2f}%{snaps['test_loss']:>9.4f}")
    swa_after = swa["test_after"]
    print(f"{'snapshot weight average':<28}{100 * swa_after['acc']:>9.2f}%{swa_after['loss']:>9.4f}")

    gain_best = seeds["test_acc"] - info["best_member_acc"]
    gain_mean = seeds["test_acc"] - mean_member
    snap_gain = snaps["test_acc"] - mean_member
    share = snap_gain / gain_mean if gain_mean > 0 else float("nan")
    ratio = many / single
    print(f"\nseed ensemble over its best member: {100 * gain_best:+.2f} points, NLL {seeds['test_loss']:.4f} against "
          f"{best_loss:.4f} (target +{100 * TARGET_GAIN:.1f} and lower: "
          f"{'met' if gain_best >= TARGET_GAIN and seeds['test_loss'] < best_loss else 'not met'})")
    print(f"seed ensemble over the mean member: {100 * gain_mean:+.2f} points ({seeds_seconds:.0f} s of training)")
    print(f"snapshot ensemble over the mean member: {100 * snap_gain:+.2f} points, {100 * share:.0f}% of the seeds' gain "
          f"at {snapshot_seconds / seeds_seconds:.2f}x their training ({snapshot_seconds:.0f} s) (target "
          f"{100 * TARGET_SNAPSHOT_SHARE:.0f}%: {'met' if share >= TARGET_SNAPSHOT_SHARE else 'not met'})")
    print(f"predict {len(files)} PNG files: one run {single:.3f} s, the ensemble of {args.seeds} {many:.3f} s, "
          f"{ratio:.2f}x (target at most {TARGET_PREDICT:g}x for 5: {'met' if ratio <= TARGET_PREDICT else 'not met'})")
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_name(), "overrides": overrides, "seeds": args.seeds,
            "seed_members": info["members"], "seed_ensemble": {"acc": seeds["test_acc"], "loss": seeds["test_loss"]},
            "snapshot_members": snaps["ensemble"]["members"],
            "snapshot_ensemble": {"acc": snaps["test_acc"], "loss": snaps["test_loss"]}, "snapshot_swa": swa_after,
            "gain_over_best": gain_best, "gain_over_mean": gain_mean, "snapshot_gain_over_mean": snap_gain,
            "snapshot_share": share, "seeds_seconds": seeds_seconds, "snapshot_seconds": snapshot_seconds,
            "predict_seconds": {"single": single, "ensemble": many, "ratio": ratio, "files": len(files)}},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
