"""Stratified, seeded splitting: carve a part of a given size with every class in proportion.

Used for the validation split (data.val_fraction), for data.subset, and for the test split of
sources that ship none. Per class, the indices are permuted with the caller's generator and the
first k are taken, where the k's are the class shares of the requested size rounded by the
largest-remainder method, so they sum exactly to the size. The generator draws one permutation
per class whatever the size, so for one seed a smaller part is contained in a larger one.
"""
from __future__ import annotations

import numpy as np
import torch


def stratified_split(labels: torch.Tensor, size: float | int, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_idx, held_idx): `held_idx` has `size` items (an int count, or a float fraction of
    len(labels)), drawn per class in proportion; `keep_idx` is the rest. Both sorted, int64."""
    # Bookkeeping in numpy: these are small integer ops, and torch's intra-op threads only add
    # overhead to them (ten times slower on a busy 2-core machine); the draws stay torch's.
    labels = torch.as_tensor(labels).cpu().numpy().astype(np.int64, copy=False).ravel()
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

    held = np.zeros(n, dtype=bool)
    for cls, k in zip(classes, taken):
        members = np.flatnonzero(labels == cls)
        chosen = torch.randperm(len(members), generator=generator)[:k].numpy()
        held[members[chosen]] = True
    return torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
