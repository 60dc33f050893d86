"""Augmentation throughput: images/s of the seed's augmentation, batched (cnntricks) against
per-image (albumentations) and batched (kornia) libraries, and its share of a training step.

What is measured, per image size (28x28x1, 32x32x3, 224x224x3), on the CPU with torch's default
threads, on random uint8 images:
  - cnntricks: the library's `seed` policy (`create_policy`, as training uses it) with every
    operation's probability set to 1 so that all three libraries do the same work: horizontal
    flip (p 0.5, folded into the warp's grid), ONE composed warp (translate 0.1, rotate 15 deg,
    scale 0.9-1.1, stretch 0.1, shear 10 deg, lens 0.05), then, for RGB only, Wei's HSV recipe
    and fancy PCA. A uint8 (N, C, H, W) batch in, a uint8 batch out; median over --repeats
    calls after one untimed warm-up call.
  - albumentations: the same operations per image (HorizontalFlip, Affine, OpticalDistortion,
    HueSaturationValue, FancyPCA; all but the flip with p=1), as one uses it: a torch DataLoader
    with 2 workers over a dataset of numpy HWC images, batches of the same size. Timed over
    whole passes of --passes batches, after one untimed pass (workers are persistent, so their
    start-up is not counted).
  - kornia: batched RandomHorizontalFlip + RandomAffine (translate, rotate, anisotropic scale
    for scale and stretch, shear) + ColorJitter (RGB only) on float images in [0, 1], with the
    uint8 conversions counted. Kornia has no lens distortion at batch level, so it does a
    little less work than the other two.
Color ops are skipped on 1-channel images by all three. A library that is not installed is
reported as such and skipped.

Also measured: the augmentation share of the training step. For the default model
(`create_model(ModelConfig(), 1, 10, (28, 28))`, channels_last, bf16 autocast where the CPU has
native bf16, SGD) one batch of 128 Fashion-MNIST-sized images: seed-policy augmentation vs a
full step (forward, backward, optimizer step); reported as aug / (aug + step), target < 15%.

Why: the seed's augmentations are only worth having if they are nearly free. Batching them on
(N, C, H, W) (airbench style) should beat a per-image pipeline by a wide margin on small images
(target >= 5x albumentations at 28 and 32) and not lose on large ones (>= 1x at 224), and
should not become the bottleneck of training.

    python benchmarks/augment_throughput.py                # full table, under a minute on 2 cores
    python benchmarks/augment_throughput.py --repeats 20 --passes 16
    python benchmarks/augment_throughput.py --smoke        # tiny batches, for CI
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from cnntricks.augment import FancyPCA, flip_horizontal, random_warp, wei_hsv
from cnntricks.augment.policy import create_policy
from cnntricks.config import AugmentConfig, ModelConfig
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.train.device import cpu_has_bf16

# (height, width, channels, batch size): Fashion-MNIST, CIFAR, ImageNet-sized.
SIZES = [(28, 28, 1, 512), (32, 32, 3, 512), (224, 224, 3, 64)]
SMOKE_BATCHES = {28: 64, 32: 64, 224: 4}
TARGETS = {28: 5.0, 32: 5.0, 224: 1.0}  # cnntricks / albumentations, at least
TARGET_SHARE = 0.15  # augmentation / (augmentation + training step), at most
STEP_BATCH = 128
WARP = dict(translate=0.1, rotate=15.0, scale=(0.9, 1.1), stretch=0.1, shear=10.0, lens=0.05)
NOT_INSTALLED = "not installed (pip install albumentations kornia)"


# The seed preset with every operation on every image (albumentations' ops below use p=1 too).
EVERY_IMAGE = AugmentConfig(policy="seed", p_translate=1.0, p_rotate=1.0, p_scale=1.0, p_stretch=1.0,
                            p_shear=1.0, p_lens=1.0, p_hsv=1.0)


def seed_policy(channels: int, pca: FancyPCA | None):
    """Seed §1 on a uint8 (N, C, H, W) batch: flip, one composed warp, then HSV and PCA for RGB."""
    return create_policy(dataclasses.replace(EVERY_IMAGE, fancy_pca=0.1 if pca else 0.0,
                                             p_hsv=1.0 if pca else 0.0), channels, pca)


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------------------------------------
# The three pipelines: each returns images/s for a (N, C, H, W) uint8 batch


def cnntricks_rate(images: torch.Tensor, repeats: int) -> tuple[float, dict[str, float]]:
    """(images/s of the whole policy, ms per batch of each operation alone)."""
    generator = torch.Generator().manual_seed(0)
    pca = FancyPCA.fit(images) if images.shape[1] == 3 else None
    policy = seed_policy(images.shape[1], pca)
    rate = len(images) / median_seconds(lambda: policy(images, generator), repeats)
    ops = {"flip": lambda: flip_horizontal(images, generator),
           "warp": lambda: random_warp(images, generator, **WARP)}
    if pca is not None:
        ops["wei_hsv"] = lambda: wei_hsv(images, generator)
        ops["fancy_pca"] = lambda: pca(images, generator)
    return rate, {name: 1000 * median_seconds(fn, repeats) for name, fn in ops.items()}


class AlbumentationsImages(torch.utils.data.Dataset):
    """numpy HWC uint8 images, each augmented on its own, as a per-image pipeline does it."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(image=self.images[index])["image"]


def one_opencv_thread(_worker: int) -> None:
    import cv2
    cv2.setNumThreads(1)  # the 2 workers are the parallelism; OpenCV threads would oversubscribe


def albumentations_rate(images: torch.Tensor, passes: int) -> float:
    import albumentations as A

    ops = [A.HorizontalFlip(p=0.5),
           # Affine has no stretch of its own: x and y scales drawn apart cover scale and stretch.
           A.Affine(translate_percent=(-0.1, 0.1), rotate=(-15, 15), scale=(0.9, 1.1),
                    shear=(-10, 10), p=1.0),
           A.OpticalDistortion(distort_limit=(-0.05, 0.05), p=1.0)]
    if images.shape[1] == 3:
        ops += [A.HueSaturationValue(p=1.0), A.FancyPCA(alpha=0.1, p=1.0)]
    dataset = AlbumentationsImages(images.permute(0, 2, 3, 1).contiguous().numpy(), A.Compose(ops))
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(images) // passes, num_workers=2,
                                         persistent_workers=True, worker_init_fn=one_opencv_thread)

    def one_pass():
        for _ in loader:
            pass

    seconds = median_seconds(one_pass, 1)  # one untimed pass starts the workers and warms up
    return len(dataset) / seconds


def kornia_rate(images: torch.Tensor, repeats: int) -> float:
    import kornia.augmentation as K

    ops = [K.RandomHorizontalFlip(p=0.5),
           # scale given as (x range, y range): drawn apart, as scale and stretch together
           K.RandomAffine(degrees=15.0, translate=(0.1, 0.1), scale=(0.9, 1.1, 0.9, 1.1),
                          shear=10.0, p=1.0)]
    if images.shape[1] == 3:
        ops.append(K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0))
    pipeline = K.AugmentationSequential(*ops)

    def run():
        out = pipeline(images.float() / 255)
        return (out * 255).round().clamp(0, 255).to(torch.uint8)

    return len(images) / median_seconds(run, repeats)


# ---------------------------------------------------------------------------------------------
# Share of the training step


def augmentation_share(repeats: int) -> tuple[float, float, str]:
    """(ms to augment, ms per training step, precision) for one batch of 128 1x28x28 images."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (STEP_BATCH, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (STEP_BATCH,), generator=generator)
    model = create_model(ModelConfig(), 1, 10, (28, 28)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    precision = "bf16" if cpu_has_bf16() else "fp32"
    x = (images.float() / 255).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    policy = seed_policy(1, None)
    augment_ms = 1000 * median_seconds(lambda: policy(images, generator), repeats)
    step_ms = 1000 * median_seconds(step, repeats)
    return augment_ms, step_ms, precision


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="augment_throughput.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 = ran (and, without --smoke, every target measured was met); "
               "1 = a target not met; 2 = bad usage.")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed calls per batched measurement; medians are reported (default 10)")
    parser.add_argument("--passes", type=int, default=8,
                        help="albumentations: batches per timed pass over its dataset (default 8)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny run for CI: batches {SMOKE_BATCHES}, 2 repeats, 1 pass; "
                             "never fails on a target")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.passes = 2, 1
    if args.repeats < 1 or args.passes < 1:
        parser.error(f"--repeats and --passes must be at least 1, got {args.repeats} and {args.passes}")
    return args


def cell(value: float | None, missing: str, form: str) -> str:
    return missing if value is None else format(value, form)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.simplefilter("ignore", ImageSizeWarning)  # the default model at 28x28, on purpose
    have_album, have_kornia = installed("albumentations"), installed("kornia")
    print(f"augment_throughput: seed-policy augmentation, images/s{' [smoke]' if args.smoke else ''}")
    print(f"device cpu, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} batched calls; albumentations: DataLoader, 2 workers")
    for name, have in (("albumentations", have_album), ("kornia", have_kornia)):
        print(f"{name}: {__import__(name).__version__ if have else NOT_INSTALLED}")
    if have_kornia:
        print("kornia: no lens distortion at batch level (RandomAffine has none): it skips that op")
    print(flush=True)

    generator = torch.Generator().manual_seed(0)
    rows, breakdowns, met = [], [], []
    for height, width, channels, batch in SIZES:
        batch = SMOKE_BATCHES[height] if args.smoke else batch
        images = torch.randint(0, 256, (batch * args.passes, channels, height, width),
                               dtype=torch.uint8, generator=generator)
        ours, ops = cnntricks_rate(images[:batch], args.repeats)
        album = albumentations_rate(images, args.passes) if have_album else None
        kornia = kornia_rate(images[:batch], args.repeats) if have_kornia else None
        vs_album = ours / album if album else None
        vs_kornia = ours / kornia if kornia else None
        target = TARGETS[height]
        verdict = "not measured" if vs_album is None else "met" if vs_album >= target else "not met"
        if vs_album is not None:
            met.append(vs_album >= target)
        rows.append((f"{height}x{width}x{channels}", batch, ours, album, kornia, vs_album, vs_kornia,
                     f">= {target:g}x: {verdict}"))
        breakdowns.append((f"{height}x{width}x{channels}", batch, ops))

    missing = "not installed"
    print(f"{'size':<12}{'batch':>6}{'cnntricks':>12}{'albumentations':>16}{'kornia':>15}"
          f"{'cnn/album':>11}{'cnn/kornia':>12}  target cnn/album")
    for size, batch, ours, album, kornia, vs_album, vs_kornia, target in rows:
        print(f"{size:<12}{batch:>6}{ours:>12.0f}{cell(album, missing, '.0f'):>16}"
              f"{cell(kornia, missing, '.0f'):>15}{cell(vs_album, '-', '.2f'):>11}"
              f"{cell(vs_kornia, '-', '.2f'):>12}  {target}")
    print("(images/s; ratios are cnntricks / the other)")
    for name, have in (("albumentations", have_album), ("kornia", have_kornia)):
        if not have:
            print(f"{name}: {NOT_INSTALLED}")

    print("\ncnntricks, ms per batch of each operation alone:")
    for size, batch, ops in breakdowns:
        print(f"  {size:<12}" + ", ".join(f"{name} {ms:.2f}" for name, ms in ops.items()))

    augment_ms, step_ms, precision = augmentation_share(args.repeats)
    share = augment_ms / (augment_ms + step_ms)
    share_met = share < TARGET_SHARE
    print(f"\naugmentation share of the training step (default model, {precision}, channels_last, "
          f"batch {STEP_BATCH} of 1x28x28): augment {augment_ms:.2f} ms, step {step_ms:.2f} ms, "
          f"share {100 * share:.1f}% (target < {100 * TARGET_SHARE:.0f}%: "
          f"{'met' if share_met else 'not met'})")
    return 0 if args.smoke or (all(met) and share_met) else 1


if __name__ == "__main__":
    sys.exit(main())
