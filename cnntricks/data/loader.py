"""Batches as index tensors: airbench's loader, a generator over one `randperm` per epoch.

The images stay in one uint8 tensor (a `Store`); a batch is `store.images[idx]`, gathered on
whatever device the store lives on. No worker processes, no per-image Python calls.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
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


class BatchReader:
    """A training split's images by index batch, on the training device: gathered from the in-memory
    tensor (already on the device), or, for a store on disk (data.storage=disk), read by a background
    thread one batch ahead so the step does not wait; `waited` sums the seconds it did wait."""

    def __init__(self, images, device: torch.device):
        self.images, self.device = images, device
        self.on_disk = not isinstance(images, torch.Tensor)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="cnntricks-read") if self.on_disk else None
        self.pending: tuple[torch.Tensor, Future] | None = None  # the upcoming batch's indices, being read
        self.waited = 0.0

    def read(self, indices: torch.Tensor, upcoming: torch.Tensor | None = None) -> torch.Tensor:
        if not self.on_disk:
            return self.images[indices]
        started = time.perf_counter()
        if self.pending is not None and torch.equal(self.pending[0], indices):
            batch = self.pending[1].result()
        else:  # the first batch of an epoch (or after a resume): nothing read ahead
            batch = self.images[indices.cpu()]
        self.waited += time.perf_counter() - started
        self.pending = None if upcoming is None else (upcoming, self.pool.submit(self.images.__getitem__, upcoming.cpu()))
        return batch.to(self.device, non_blocking=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
