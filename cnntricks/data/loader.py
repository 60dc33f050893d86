"""Batches as index tensors: airbench's loader, a generator over one `randperm` per epoch.

The images stay in one uint8 tensor (a `Store`); a batch is `store.images[idx]`, gathered on
whatever device the store lives on. No worker processes, no per-image Python calls.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None, *,
                  shuffle: bool = True, drop_last: bool = True,
                  order: Callable[[torch.Generator], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
    """Yield int64 index tensors covering range(n) in batches of `batch_size`.

    shuffle: a fresh permutation from `generator` (required then), else 0..n-1 in order.
    order: draws the epoch's n indices from `generator` instead of the permutation (a sampler of
    data/samplers.py; its indices may repeat).
    drop_last: leave out the final short batch, so every step sees the same batch size and the
    per-batch loss band stays comparable (seed §7 reads its width).
    """
    if batch_size < 1:
        raise ValueError(f"batch_indices: batch_size must be >= 1, got {batch_size}")
    if drop_last and 0 < n < batch_size:
        # An epoch with no steps would train nothing and say nothing; fail loudly instead.
        raise ValueError(f"batch_indices: {n} items with batch_size {batch_size} and drop_last=True "
                         f"give no batch; lower optim.batch_size to at most {n} or use drop_last=False")
    if shuffle:
        if generator is None:
            raise ValueError("batch_indices: shuffle=True needs a torch.Generator, so the order can be repeated")
        indices = order(generator) if order is not None else torch.randperm(n, generator=generator,
                                                                            device=generator.device)
    else:
        indices = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield indices[start:start + batch_size]
