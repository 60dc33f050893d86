"""Loop overhead: images/s of cnntricks' `fit` against the same steps written as a bare PyTorch loop.

What is measured: both sides train a fresh model for the same number of steps on the same data,
already on the device as one uint8 tensor, and count images/s over the steps only.
  - cnntricks: `fit` on data.subset = steps x batch images for one epoch; its summary's
    images_per_second times the training steps only (not data loading, evaluation or checkpoints)
    and includes everything the loop does per step (history lines, metrics, hooks).
  - bare: the loop below, as one would write it by hand: the same model (`create_model`), batch
    size, precision (autocast), memory format, augmentation functions (cnntricks.augment),
    normalization, optimizer with the same parameter groups, and the LR set every step from the
    same pure schedule function. No history, no metrics, no hooks.
The two alternate over --repeats runs (after one untimed warm-up, so the first run does not pay
for building the oneDNN kernels); reported are the medians and cnntricks/bare (target >= 0.95).

Why: a framework earns its place only if it costs (almost) nothing, as Lightning Fabric's "your
loop stays your loop" promises; a slow loop would also distort every time-to-accuracy figure.

    python benchmarks/overhead.py                      # 60 steps, 3 repeats
    python benchmarks/overhead.py --steps 100 --repeats 5 model.width=64
    python benchmarks/overhead.py --smoke              # a few steps, for CI
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from cnntricks import config as config_module
from cnntricks.augment import flip_horizontal, random_crop
from cnntricks.data import DataError, DataWarning, load_splits
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.preprocess import fit_normalization
from cnntricks.train.device import autocast
from cnntricks.session import train
from cnntricks.train.inference import device_and_precision, uses_channels_last
from cnntricks.train.schedule import lr_factor

TARGET_RATIO = 0.95
# A few steps of the default model; one thread, because on a busy 2-core machine two OpenMP
# threads wait on each other (measured: 4 steps took 38 s with 2 threads under load, 1 s with 1).
SMOKE_STEPS, SMOKE_REPEATS, SMOKE_OVERRIDES = 4, 2, ["train.threads=1"]


def unmirrored_settings(cfg) -> list[str]:
    """Settings the bare loop does not reproduce; comparing with them on would be unfair."""
    r = cfg.regularize
    return [f"regularize.{key}={value}" for key, value in
            (("l1", r.l1), ("l2", r.l2), ("max_norm", r.max_norm)) if value]


def train_bare(cfg, splits, device: torch.device, precision: str, steps: int) -> tuple[torch.nn.Module, float]:
    """Train a fresh model for `steps` steps with a plain loop: (model, images/s over the steps).

    The same arithmetic as one epoch of `fit` with this config, step for step (the tests check
    the weights agree), so the two differ only in what the loop does around it.
    """
    torch.manual_seed(cfg.train.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
    channels_last = uses_channels_last(cfg)
    model = create_model(cfg.model, splits.train.channels, len(splits.classes),
                         (splits.train.height, splits.train.width)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]  # conv / linear weights
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # biases, norm scales and shifts
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optim.name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                    nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.momentum, 0.999))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    normalize = fit_normalization(splits.train.images, cfg.preprocess.normalize)
    images, labels = splits.train.images.to(device), splits.train.labels.to(device)
    batch_size = cfg.optim.batch_size
    policy = cfg.augment.policy

    synchronize(device)
    started = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator, device=device)
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        x = images[index]
        if policy in ("flip", "standard"):
            x = flip_horizontal(x, generator)
        if policy == "standard":
            x = random_crop(x, cfg.augment.crop_padding, generator)
        x = normalize(x)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = cfg.optim.lr * lr_factor(cfg.schedule, step, steps, steps)  # one epoch of `steps`, as fit
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), labels[index], label_smoothing=cfg.optim.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    synchronize(device)
    return model, steps * batch_size / (time.perf_counter() - started)


def cnntricks_images_per_second(cfg, run_dir: Path) -> float:
    return train(cfg, run_dir, progress=False, report=False)["images_per_second"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="overhead.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Exit status: 0 = ran (and, without --smoke, cnntricks/bare >= {TARGET_RATIO}); "
               "1 = ratio below target; 2 = bad usage or configuration; 3 = data problem.")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="changes to the default recipe, applied to both sides")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each side, alternated; medians are reported (default 3)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny run for CI: {SMOKE_STEPS} steps, {SMOKE_REPEATS} repeats, "
                             f"{' '.join(SMOKE_OVERRIDES)}; never fails on the target")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats = SMOKE_STEPS, SMOKE_REPEATS
        args.overrides = SMOKE_OVERRIDES + args.overrides
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps and --repeats must be at least 1, got {args.steps} and {args.repeats}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore", ImageSizeWarning)  # 28x28 Fashion-MNIST; advice about the recipe
    try:
        cfg = config_module.load(None, args.overrides)
        problems = unmirrored_settings(cfg)
        if problems:
            raise config_module.ConfigError(
                f"the bare loop does not reproduce {', '.join(problems)}; set them back to the "
                "defaults, or add them to train_bare in benchmarks/overhead.py")
        # One epoch of exactly `steps` full batches: data.subset picks that many training images.
        images = args.steps * cfg.optim.batch_size
        # Evaluation is not timed, but costs wall time after every fit: TTA would double it.
        config_module.apply_overrides(cfg, [f"data.subset={images}", "train.epochs=1", "train.tta=false"])
        # train.device=cuda without CUDA, or fp16 on a CPU, is a configuration error too
        device, precision = device_and_precision(cfg)
    except config_module.ConfigError as err:
        print(f"overhead: configuration error: {err}", file=sys.stderr)
        return 2
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        with warnings.catch_warnings():  # "data.subset is larger than the data": said below, with the fix
            warnings.simplefilter("ignore", DataWarning)
            splits = load_splits(cfg.data, cfg.train.seed)
    except DataError as err:
        print(f"overhead: data problem: {err}", file=sys.stderr)
        return 3
    if len(splits.train) != images:
        print(f"overhead: --steps {args.steps} x optim.batch_size {cfg.optim.batch_size} = {images} "
              f"images, but {cfg.data.source} has {len(splits.train)} training images; lower --steps "
              f"to at most {len(splits.train) // cfg.optim.batch_size}", file=sys.stderr)
        return 2

    layout = "channels_last" if uses_channels_last(cfg) else "contiguous"
    print(f"overhead: cnntricks fit() against a bare PyTorch loop{' [smoke]' if args.smoke else ''}")
    print(f"device {device}, precision {precision}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"model {cfg.model.name} width {cfg.model.width} depth {cfg.model.depth}, {layout}, "
          f"batch {cfg.optim.batch_size}, optimizer {cfg.optim.name}, schedule {cfg.schedule.name}, "
          f"augment {cfg.augment.policy}; {args.steps} steps ({images} images) per run, "
          f"{args.repeats} repeats", flush=True)

    train_bare(cfg, splits, device, precision, min(args.steps, 3))  # warm-up: builds the oneDNN kernels
    ours, bare = [], []
    with tempfile.TemporaryDirectory(prefix="overhead-") as scratch:
        for repeat in range(args.repeats):
            # Alternate which side goes first, so drift in machine load touches both alike.
            sides = [("cnntricks", ours), ("bare", bare)]
            for name, rates in sides if repeat % 2 == 0 else sides[::-1]:
                if name == "cnntricks":
                    rates.append(cnntricks_images_per_second(cfg, Path(scratch) / f"run-{repeat}"))
                else:
                    rates.append(train_bare(cfg, splits, device, precision, args.steps)[1])
            print(f"  repeat {repeat + 1}: cnntricks {ours[-1]:.0f} img/s, bare {bare[-1]:.0f} img/s",
                  flush=True)

    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    ratio = ours_median / bare_median
    print(f"\n{'':<10}{'cnntricks':>12}{'bare':>12}")
    print(f"{'median':<10}{ours_median:>12.0f}{bare_median:>12.0f}  images/s")
    print(f"{'min':<10}{min(ours):>12.0f}{min(bare):>12.0f}")
    print(f"{'max':<10}{max(ours):>12.0f}{max(bare):>12.0f}")
    met = ratio >= TARGET_RATIO
    print(f"\nratio cnntricks/bare: {ratio:.3f} (target >= {TARGET_RATIO}: {'met' if met else 'not met'})")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
