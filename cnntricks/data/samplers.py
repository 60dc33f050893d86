"""Class-rebalancing samplers (imbalance.sampler; seed, "Misc": up-sampling and down-sampling,
Hensman & Masko 2015), as index orders for the loop's one-kernel batching.

A sampler draws an epoch's order of training indices from the loop's generator; the loop cuts it
into index batches as it cuts the plain permutation (data/loader.py), so there is no per-image
Python and a checkpoint inside an epoch continues it bit for bit (the same generator state draws
the same order again). Each epoch has a fixed length, so the LR schedule knows its steps:

  none            a permutation of the n training images (the plain loop)
  oversample      every class up to the largest class's count (max = k·n_c + r): each image of the
                  class k times, and r more drawn without replacement each epoch; C·max per epoch
  undersample     every class down to the smallest class's count, a fresh draw each epoch; C·min per epoch
  class_balanced  n draws, each class equally likely (1/C), uniform within it (with replacement)
  sqrt            n draws, class c with probability ∝ √n_c (Mahajan et al. 2018)
  progressive     n draws, from instance-balanced (∝ n_c) at the start to class-balanced at the end,
                  linearly in training progress (Kang et al. 2020)

imbalance.two_stage (`two_stage`) orders the seed's third remedy: the head classes' images first, then the
tail's with a replayed share of the head's.

imbalance.minority_crops=K adds K copies of each image of the classes under imbalance.minority_below
images to any of them (the seed's extra crops for the minority classes: `with_minority_copies`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from cnntricks.config import ImbalanceConfig
from cnntricks.data.errors import DataError
from cnntricks.registry import Registry

SAMPLERS = Registry("imbalance.sampler")


@dataclass
class Sampler:
    """An epoch's order of training indices: `size` of them, drawn by `order(generator, progress)`;
    `stages` (two_stage): [(epochs, size)] of each stage, whose epochs have their own size."""
    name: str
    labels: torch.Tensor              # int64 (n,), on the device the order is used on
    size: int                         # indices per epoch (the first stage's)
    draw: Callable[[Sampler, torch.Generator, float], torch.Tensor]
    stages: list[tuple[int, int]] | None = None
    head: list[int] | None = None     # two_stage: the head classes (the others are the tail)

    def epoch_size(self, epoch: int) -> int:
        """Indices in epoch `epoch` (0-based)."""
        for epochs, size in self.stages or []:
            if epoch < epochs:
                return size
            epoch -= epochs
        return self.stages[-1][1] if self.stages else self.size

    def order(self, generator: torch.Generator, progress: float = 0.0) -> torch.Tensor:
        """int64 indices into the training split; `progress` in [0, 1]: the share of training done
        (two_stage: the epoch's start, which says its stage)."""
        return self.draw(self, generator, progress)


def sampler_for(cfg: ImbalanceConfig, labels: torch.Tensor, epochs: int) -> Sampler:
    """The run's sampler (imbalance.*): two_stage, or imbalance.sampler with its minority crops."""
    if cfg.two_stage:
        return two_stage(labels, epochs, stage2_epochs(cfg, epochs), cfg.head_min, cfg.replay, cfg.stage2_passes)
    return create_sampler(cfg.sampler, labels, cfg.minority_crops, cfg.minority_below)


def stage2_epochs(cfg: ImbalanceConfig, epochs: int) -> int:
    """imbalance.stage2_epochs, or half of the run's epochs (at least one)."""
    return cfg.stage2_epochs if cfg.stage2_epochs is not None else max(1, epochs // 2)


def create_sampler(name: str, labels: torch.Tensor, minority_crops: int = 0, minority_below: int | None = None
                   ) -> Sampler:
    """The sampler `name`, with `minority_crops` extra copies per epoch of each image of the classes
    under `minority_below` images (None: under the median class count) when asked."""
    sampler = SAMPLERS.create(name, labels)
    return with_minority_copies(sampler, minority_crops, minority_below) if minority_crops else sampler


def minority_classes(labels: torch.Tensor, below: int | None) -> list[int]:
    """The classes with fewer than `below` training images (None: fewer than the median class's)."""
    counts = torch.bincount(labels)
    present = counts[counts > 0]
    bar = float(present.double().quantile(0.5)) if below is None else below  # the midpoint of an even count
    return [c for c, n in enumerate(counts.tolist()) if 0 < n < bar]


def with_minority_copies(base: Sampler, copies: int, below: int | None) -> Sampler:
    """The seed's extra crops for the classes with few images (Wei et al.'s challenge solution): each
    epoch's order gets `copies` more of each image of the minority classes; the augmentation draws each
    copy afresh, so with a cropping policy (standard, seed, heavy) every copy is another crop."""
    classes = minority_classes(base.labels, below)
    minority = torch.nonzero(torch.isin(base.labels, torch.tensor(classes, device=base.labels.device))).flatten()

    def draw(s: Sampler, generator: torch.Generator, progress: float) -> torch.Tensor:
        return shuffled(torch.cat([base.order(generator, progress), minority.repeat(copies)]), generator)
    return Sampler(f"{base.name}+minority_crops", base.labels, base.size + copies * len(minority), draw)


def by_class(labels: torch.Tensor) -> list[torch.Tensor]:
    """The indices of each class present, in class order."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    return [part for part in torch.split(order, counts.tolist()) if len(part)]


def weighted(labels: torch.Tensor, class_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """len(labels) draws with replacement, image i with probability ∝ class_weight[labels[i]] / n_class."""
    counts = torch.bincount(labels).to(class_weight.dtype)
    per_image = (class_weight / counts.clamp(min=1))[labels]
    return torch.multinomial(per_image, len(labels), replacement=True, generator=generator)


def shuffled(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=generator, device=generator.device).to(indices.device)]


@SAMPLERS.register("none")
def plain(labels: torch.Tensor) -> Sampler:
    return Sampler("none", labels, len(labels),
                   lambda s, g, p: torch.randperm(len(s.labels), generator=g, device=g.device))


@SAMPLERS.register("oversample")
def oversample(labels: torch.Tensor) -> Sampler:
    classes = by_class(labels)
    top = max(len(c) for c in classes)

    def draw(s: Sampler, generator: torch.Generator, progress: float) -> torch.Tensor:
        parts = []
        for members in classes:
            repeats, rest = divmod(top, len(members))
            parts += [members] * repeats + [shuffled(members, generator)[:rest]]
        return shuffled(torch.cat(parts), generator)
    return Sampler("oversample", labels, top * len(classes), draw)


@SAMPLERS.register("undersample")
def undersample(labels: torch.Tensor) -> Sampler:
    classes = by_class(labels)
    low = min(len(c) for c in classes)

    def draw(s: Sampler, generator: torch.Generator, progress: float) -> torch.Tensor:
        return shuffled(torch.cat([shuffled(members, generator)[:low] for members in classes]), generator)
    return Sampler("undersample", labels, low * len(classes), draw)


def class_weights(labels: torch.Tensor, power: float) -> torch.Tensor:
    """Class probabilities ∝ n_c ** power (0: balanced, 0.5: square root, 1: as the data is)."""
    counts = torch.bincount(labels).double()
    weights = torch.where(counts > 0, counts ** power, torch.zeros_like(counts))
    return weights / weights.sum()


@SAMPLERS.register("class_balanced")
def class_balanced(labels: torch.Tensor) -> Sampler:
    weights = class_weights(labels, 0.0)
    return Sampler("class_balanced", labels, len(labels), lambda s, g, p: weighted(s.labels, weights.to(s.labels.device), g))


@SAMPLERS.register("sqrt")
def square_root(labels: torch.Tensor) -> Sampler:
    weights = class_weights(labels, 0.5)
    return Sampler("sqrt", labels, len(labels), lambda s, g, p: weighted(s.labels, weights.to(s.labels.device), g))


@SAMPLERS.register("progressive")
def progressive(labels: torch.Tensor) -> Sampler:
    natural, balanced = class_weights(labels, 1.0), class_weights(labels, 0.0)

    def draw(s: Sampler, generator: torch.Generator, progress: float) -> torch.Tensor:
        t = min(max(progress, 0.0), 1.0)
        return weighted(s.labels, ((1 - t) * natural + t * balanced).to(s.labels.device), generator)
    return Sampler("progressive", labels, len(labels), draw)


def head_classes(labels: torch.Tensor, head_min: int | None) -> list[int]:
    """The classes with at least `head_min` training images (None: at least the median class's)."""
    minority = set(minority_classes(labels, head_min))
    counts = torch.bincount(labels).tolist()
    return [c for c, n in enumerate(counts) if n and c not in minority]


def two_stage(labels: torch.Tensor, epochs: int, stage2_epochs: int, head_min: int | None, replay: float,
              passes: int | None = None) -> Sampler:
    """The seed's two-stage fine-tuning for imbalance: the classes split into head (many images) and tail;
    the first `epochs - stage2_epochs` epochs are permutations of the head classes' images, the rest
    `passes` permutations each of the tail classes' images with a share `replay` of the head's, redrawn
    each pass, stratified by class. passes None: as many as make a second-stage epoch about as long as a
    first-stage one (a tail of 1% of the images would otherwise get a few steps in all)."""
    head = head_classes(labels, head_min)
    is_head = torch.isin(labels, torch.tensor(head, device=labels.device))
    head_index, tail_index = torch.nonzero(is_head).flatten(), torch.nonzero(~is_head).flatten()
    if not len(tail_index):
        raise DataError(f"imbalance.two_stage: every class has at least {head_min or 'the median count of'} training "
                        f"images, so there are no tail classes for the second stage; lower imbalance.head_min, or "
                        f"train without two_stage")
    per_class = [torch.nonzero(labels == c).flatten() for c in head]
    kept = [round(replay * len(members)) for members in per_class]
    stage1 = epochs - stage2_epochs
    per_pass = len(tail_index) + sum(kept)
    passes = passes if passes is not None else max(1, round(len(head_index) / per_pass))

    def one_pass(generator: torch.Generator) -> torch.Tensor:
        replayed = [shuffled(members, generator)[:k] for members, k in zip(per_class, kept)]
        return shuffled(torch.cat([tail_index, *replayed]), generator)

    def draw(s: Sampler, generator: torch.Generator, progress: float) -> torch.Tensor:
        if round(progress * epochs) < stage1:
            return shuffled(head_index, generator)
        return torch.cat([one_pass(generator) for _ in range(passes)])
    return Sampler("two_stage", labels, len(head_index), draw,
                   stages=[(stage1, len(head_index)), (stage2_epochs, passes * per_pass)], head=head)
