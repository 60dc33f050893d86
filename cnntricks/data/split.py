"""Stratified, seeded splitting: carve a part of a given size with every class in proportion.

Used for the validation split (data.val_fraction), for data.subset, and for the test split of
sources that ship none. Per class, the indices are permuted with the caller's generator and the
first k are taken, where the k's are the class shares of the requested size rounded by the
largest-remainder method, so they sum exactly to the size. The generator draws one permutation
per class whatever the size, so for one seed a smaller part is contained in a larger one.

`keep_each` caps what is held out of a class so that it keeps at least that many items: with
`keep_each=1` a split never takes a class's last image (one image per class and
data.val_fraction=0.1 would otherwise train without that class). The held part is then smaller
than asked; `hold_out` says by how much and for which classes, so the caller can warn.
"""
from __future__ import annotations

import numpy as np
import torch


def _quota(labels: np.ndarray, size: float | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, counts, taken): the items per class that a part of `size` holds out, uncapped."""
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"stratified_split: size must be an int count or a float fraction, got {size!r}")
    if isinstance(size, float):
        if not 0.0 <= size <= 1.0:
            raise ValueError(f"stratified_split: fraction {size} is outside [0, 1]")
        size = int(size * n + 0.5)
    if not 0 <= size <= n:
        raise ValueError(f"stratified_split: cannot hold out {size} of {n} items")

    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (size / max(n, 1))
    taken = np.floor(quota).astype(np.int64)
    # Largest remainder: the classes with the biggest rounding loss get the leftover items;
    # a stable sort breaks ties by class order, so the result is reproducible.
    leftover = size - int(taken.sum())
    taken[np.argsort(-(quota - taken), kind="stable")[:leftover]] += 1
    return classes, counts, taken


def _as_numpy(labels) -> np.ndarray:
    # Bookkeeping in numpy: these are small integer ops, and torch's intra-op threads only add
    # overhead to them (ten times slower on a busy 2-core machine); the draws stay torch's.
    return torch.as_tensor(labels).cpu().numpy().astype(np.int64, copy=False).ravel()


def stratified_split(labels: torch.Tensor, size: float | int, generator: torch.Generator, keep_each: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_idx, held_idx): `held_idx` has `size` items (an int count, or a float fraction of
    len(labels)), drawn per class in proportion; `keep_idx` is the rest. Both sorted, int64.
    Each class keeps at least `keep_each` items (all it has, when fewer): held_idx may be short."""
    labels = _as_numpy(labels)
    n = len(labels)
    classes, counts, taken = _quota(labels, size)
    taken = np.minimum(taken, np.maximum(counts - keep_each, 0))

    held = np.zeros(n, dtype=bool)
    for cls, k in zip(classes, taken):
        members = np.flatnonzero(labels == cls)
        chosen = torch.randperm(len(members), generator=generator)[:k].numpy()
        held[members[chosen]] = True
    return torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))


def stratified_folds(labels: torch.Tensor, folds: int, generator: torch.Generator) -> list[torch.Tensor]:
    """k stratified folds (sorted int64 indices) that partition `labels`: each class's items, shuffled,
    dealt round-robin from a random fold, so every fold gets its share of every class (sizes differ by
    at most one per class)."""
    labels = _as_numpy(labels)
    assigned = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        order = torch.randperm(len(members), generator=generator).numpy()
        start = int(torch.randint(folds, (1,), generator=generator))
        assigned[members[order]] = (start + np.arange(len(members))) % folds
    return [torch.from_numpy(np.flatnonzero(assigned == fold)) for fold in range(folds)]


def hold_out(labels: torch.Tensor, fraction: float, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, int, list[int]]:
    """(keep_idx, held_idx, asked, cut): a stratified part of `fraction` that leaves every class
    at least one item in keep_idx; `asked` is the size the fraction asked for and `cut` the
    labels of the classes that gave fewer items than their share (empty: the split is as asked)."""
    classes, counts, taken = _quota(_as_numpy(labels), fraction)
    keep, held = stratified_split(labels, fraction, generator, keep_each=1)
    return keep, held, int(taken.sum()), classes[taken > counts - 1].tolist()
