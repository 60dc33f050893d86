"""Long-tailed training splits (data.imbalance, seed: "Misc", class imbalance).

Real image folders are class-imbalanced; to measure what imbalance costs and what the remedies
give, any source's training split can be made long-tailed with a known max/min class ratio ρ,
the benchmark's way (Cui et al. 2019, Cao et al. 2019, the CIFAR-10-LT of their code):

  - `exp`:  class i (in class order) keeps n · ρ^(-i / (C - 1)) images, rounded down, where n is
            the largest class's count: class 0 keeps n, the last class n / ρ;
  - `step`: the first half of the classes (C // 2) keep n, the rest n / ρ.

A class never keeps more images than it has nor fewer than one. The images kept are the first
of a seeded permutation per class, so for one seed a milder ratio keeps a superset. The
validation and test splits are not touched: they stay balanced, and every figure measured on
them weighs each class alike.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cnntricks.data.store import Store

PROFILES = ("exp", "step")


def long_tail_counts(counts: list[int], ratio: float, profile: str = "exp") -> list[int]:
    """The training images each class keeps: `profile` from the largest count down to it / `ratio`,
    capped by what each class has, at least one for a class that has any."""
    if profile not in PROFILES:
        raise ValueError(f"data.imbalance_profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if ratio < 1:
        raise ValueError(f"data.imbalance must be >= 1 (the largest class over the smallest), got {ratio}")
    top, classes = max(counts), len(counts)
    wanted = []
    for i in range(classes):
        if profile == "exp":
            share = ratio ** (-i / (classes - 1)) if classes > 1 else 1.0
        else:
            share = 1.0 if i < classes // 2 else 1.0 / ratio
        wanted.append(math.floor(top * share + 1e-9))
    return [min(have, max(1, want)) if have else 0 for have, want in zip(counts, wanted)]


def make_long_tailed(store: Store, ratio: float, profile: str, generator: torch.Generator) -> Store:
    """`store` with each class cut to `long_tail_counts` (the first of a seeded permutation per class)."""
    labels = store.labels.cpu().numpy()
    counts = store.class_counts().tolist()
    keep = long_tail_counts(counts, ratio, profile)
    chosen = []
    for cls, k in enumerate(keep):
        members = np.flatnonzero(labels == cls)
        order = torch.randperm(len(members), generator=generator).numpy()
        chosen.append(members[order[:k]])
    index = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return store.subset(torch.from_numpy(index.astype(np.int64)))
