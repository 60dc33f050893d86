"""The running epoch's counters, so that a checkpoint inside an epoch continues it bit for bit.

An epoch draws one permutation of the training split from the loader's generator at its start,
then the augmentation draws from the same generator step by step. To continue after step k of
the epoch, a checkpoint keeps the generator's state from before the permutation (the same order
is drawn again, and its first k batches skipped) besides the generator's state now (restored by
the checkpoint, for the draws still to come), and the sums the epoch's line is made of.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from cnntricks.data import batch_indices


@dataclass
class EpochProgress:
    start_state: torch.Tensor      # the loader generator's state before this epoch's permutation
    loss_sum: torch.Tensor         # () float32 on the device: sum of the batch losses x batch size
    correct: torch.Tensor          # () int64 on the device
    seen: int = 0                  # images trained on
    batches: int = 0               # steps done in this epoch
    seconds_before: float = 0.0    # training time before a resume
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, generator: torch.Generator, device: torch.device) -> EpochProgress:
        return cls(generator.get_state(), torch.zeros((), device=device),
                   torch.zeros((), device=device, dtype=torch.long))

    def batch_indices(self, n: int, batch_size: int, generator: torch.Generator,
                      order: Callable[[torch.Generator], torch.Tensor] | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """This epoch's index batches from where it stands (all of them on a fresh epoch), each with the
        next one (None at the last: a disk store reads it while the step runs); `order` draws the epoch's
        n indices (imbalance.sampler) instead of a permutation."""
        batches = batch_indices(n, batch_size, generator, order=order)
        if self.batches:
            now = generator.get_state()
            generator.set_state(self.start_state)
            for _ in range(self.batches):  # the first next() draws the permutation again
                next(batches)
            generator.set_state(now)
        self.started = time.perf_counter()
        current = next(batches, None)
        while current is not None:
            upcoming = next(batches, None)  # slices of the permutation drawn above: no generator draw
            self.batches += 1  # counted as done from here: a checkpoint in the loop's body comes after its step
            yield current, upcoming
            current = upcoming

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """A step's mean loss and predictions, summed on the device (no host sync)."""
        self.loss_sum += loss.detach() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += len(labels)

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def state_dict(self) -> dict:
        """For state.json (the generator's start state goes with the RNG tensors)."""
        return {"loss_sum": float(self.loss_sum), "correct": int(self.correct), "seen": self.seen,
                "batches": self.batches, "seconds": self.seconds}

    @classmethod
    def from_state(cls, saved: dict, start_state: torch.Tensor, device: torch.device) -> EpochProgress:
        return cls(start_state, torch.tensor(saved["loss_sum"], dtype=torch.float32, device=device),
                   torch.tensor(saved["correct"], dtype=torch.long, device=device), saved["seen"],
                   saved["batches"], saved["seconds"])
