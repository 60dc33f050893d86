"""Sampler cost: what `imbalance.sampler` (and minority crops, two-stage) adds to a training step.

What is measured, on the CPU: each sampler draws one epoch's order of training indices for the
labels of long-tailed Fashion-MNIST (`data.imbalance=100` on the 54,000 training images: 13,399
labels, the counts the library builds; `--ratio` changes it), timed over --repeats epochs
(median); divided by the epoch's steps at batch 128, that is the sampler's cost per step. The
step it is compared with: the default model (`create_model(ModelConfig(), 1, 10, (28, 28))`,
channels_last, bf16 autocast where the CPU has native bf16, else fp32) training on random batches
of 128 gathered by index from a uint8 store, median over --steps steps. Reported per sampler: the
draw per epoch, per step, and its share of a step; target: every sampler under 2% of a step.
The gather itself (`images[indices]`) is the plain loop's too, so it is not the sampler's cost.

    python benchmarks/sampler_cost.py                # 20 draws per sampler, 30 steps
    python benchmarks/sampler_cost.py --smoke        # a few, for CI

Exit status: 0 = the figures printed (the target is reported beside them, not enforced).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from cnntricks.config import ModelConfig
from cnntricks.data.longtail import long_tail_counts
from cnntricks.data.samplers import SAMPLERS, create_sampler, two_stage
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.train.device import autocast, cpu_has_bf16, cpu_name

TARGET_SHARE = 0.02
BATCH = 128


def labels_of(ratio: float) -> torch.Tensor:
    counts = long_tail_counts([5400] * 10, ratio)
    return torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])


def step_seconds(steps: int) -> tuple[float, str]:
    """Median seconds of a training step of the default model at batch 128 (and the precision)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageSizeWarning)
        model = create_model(ModelConfig(), 1, 10, (28, 28)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    precision = "bf16" if cpu_has_bf16() else "fp32"
    store = torch.randint(0, 256, (4096, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (4096,))
    device, times = torch.device("cpu"), []
    for step in range(steps + 2):  # two untimed: oneDNN builds its kernels on the first
        indices = torch.randint(0, 4096, (BATCH,))
        started = time.perf_counter()
        images = (store[indices].float() / 255).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(model(images), labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times), precision


def draw_seconds(sampler, repeats: int, progress: float = 0.5) -> float:
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sampler.order(generator, progress)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sampler_cost.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=100, help="data.imbalance of the labels (default 100)")
    parser.add_argument("--repeats", type=int, default=20, help="epochs drawn per sampler (default 20)")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed (default 30)")
    parser.add_argument("--smoke", action="store_true", help="3 draws, 3 steps, one thread")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.steps = 3, 3
        torch.set_num_threads(1)
    labels = labels_of(args.ratio)
    step, precision = step_seconds(args.steps)
    print(f"cpu {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, precision {precision}")
    print(f"labels: {len(labels)} (data.imbalance={args.ratio:g} of Fashion-MNIST's 54,000), batch {BATCH}")
    print(f"training step: {1e3 * step:.2f} ms")
    samplers = [(name, create_sampler(name, labels)) for name in SAMPLERS.names()]
    samplers += [("none+minority_crops=4", create_sampler("none", labels, minority_crops=4)),
                 ("two_stage", two_stage(labels, 10, 5, None, 0.1))]
    print(f"\n{'sampler':<24}{'epoch':>8}{'draw/epoch':>14}{'per step':>12}{'share':>9}")
    worst = 0.0
    for name, sampler in samplers:
        seconds = draw_seconds(sampler, args.repeats)
        steps = max(1, sampler.size // BATCH)
        share = seconds / steps / step
        worst = max(worst, share)
        print(f"{name:<24}{sampler.size:>8}{1e3 * seconds:>11.3f} ms{1e6 * seconds / steps:>9.1f} us{100 * share:>8.3f}%")
    print(f"\nworst sampler share of a step: {100 * worst:.3f}% "
          f"(target < {100 * TARGET_SHARE:.0f}%: {'met' if worst < TARGET_SHARE else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
