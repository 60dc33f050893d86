"""A hand-written expert PyTorch loop for Fashion-MNIST, given a number of seconds: the peer of the frontier.

What a careful engineer writes by hand, with no cnntricks in the loop (cnntricks only loads the IDX files):
the whole split in memory as uint8 (airbench's way); a small VGG-style net (3 stages of two 3x3 conv +
BatchNorm + ReLU and a 2x2 max-pool, widths 16/32/64, global average pooling, a linear head); SGD with
Nesterov momentum 0.9 and weight decay 5e-4 on the weights; batches of 256; label smoothing 0.1; one-cycle LR
(a linear rise to 0.2 over a quarter of the steps, a linear fall to 0); random flips and shifts of up to 2
pixels; bf16 autocast where the CPU has it, and channels_last; flip test-time augmentation. It plans its length
as an expert with a deadline would: it times 10 steps, then sets the total steps so that training fills the
seconds (one-cycle over them). Its time counts from the first step to the last (no validation during
training); the test split is evaluated after.

    python benchmarks/expert_loop.py --seconds 60 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

BATCH, PEAK_LR, WEIGHT_DECAY, SMOOTHING, SHIFT, TIMING_STEPS = 256, 0.2, 5e-4, 0.1, 2, 10


def expert_net(channels: int, classes: int, widths=(16, 32, 64)) -> nn.Module:
    layers, before = [], channels
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(before, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            before = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(before, classes))


def flip_and_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) float: each image mirrored with probability 1/2 and moved by up to SHIFT pixels."""
    n, _, h, w = images.shape
    flip = (torch.rand(n, generator=generator) < 0.5).view(-1, 1, 1, 1)
    images = torch.where(flip, images.flip(-1), images)
    padded = F.pad(images, (SHIFT,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None], rows, cols]


def one_cycle(step: int, total: int) -> float:
    rise = max(1, total // 4)
    return PEAK_LR * ((step + 1) / rise if step < rise else max(0.0, (total - step) / (total - rise)))


def train(seconds: float, seed: int, subset: int | None = None) -> dict:
    from cnntricks.config import DataConfig
    from cnntricks.data import load_splits
    from cnntricks.train.device import cpu_has_bf16
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    splits = load_splits(DataConfig(val_fraction=0.0, subset=subset), seed)
    train_x, train_y = splits.train.images, splits.train.labels
    mean, std = train_x.float().mean() / 255, train_x.float().std() / 255
    model = expert_net(train_x.shape[1], len(splits.train.classes)).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": others, "weight_decay": 0}],
                                lr=PEAK_LR, momentum=0.9, nesterov=True)
    bf16 = cpu_has_bf16()
    batch = min(BATCH, len(train_y))
    per_epoch = len(train_y) // batch

    def inputs(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)

    step, total, started, timed_from = 0, None, time.perf_counter(), None
    model.train()
    while total is None or step < total:
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, per_epoch * batch, batch):
            if total is not None and step >= total:
                break
            index = order[start:start + batch]
            images = flip_and_shift(inputs(train_x[index]), generator)
            for group in optimizer.param_groups:
                group["lr"] = one_cycle(step, total or 10 ** 9)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), train_y[index], label_smoothing=SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 3:  # the first steps pay for allocation: timed from here
                timed_from = time.perf_counter()
            if total is None and step == 3 + TIMING_STEPS:  # the plan: as many steps as fill the seconds
                per_step = (time.perf_counter() - timed_from) / TIMING_STEPS
                total = max(step + 1, step + int((seconds - (time.perf_counter() - started)) / per_step))
    train_seconds = time.perf_counter() - started
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(splits.test), 1024):
            images = inputs(splits.test.images[start:start + 1024])
            logits = model(images).float() + model(images.flip(-1)).float()  # flip TTA
            correct += int((logits.argmax(1) == splits.test.labels[start:start + 1024]).sum())
    return {"test_acc": correct / len(splits.test), "seconds": train_seconds, "steps": step,
            "epochs": step / per_epoch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="expert_loop.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, required=True, help="training seconds to fill")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, help="training images (data.subset; default all)")
    args = parser.parse_args(argv)
    print(json.dumps(train(args.seconds, args.seed, args.subset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
