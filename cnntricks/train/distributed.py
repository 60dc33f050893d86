"""Several processes, one run: PyTorch DistributedDataParallel under `torchrun` (gloo on CPU, NCCL on CUDA).

What each process does (the Trainer asks `World` for all of it; one process is World(rank 0, size 1), where
every helper here is the identity and nothing is communicated):

  - data: every rank holds the whole split and draws the SAME index batches (one seeded order generator),
    then takes its share of each: batch[rank * B/W : (rank + 1) * B/W]. optim.batch_size stays the global
    batch, so a config means the same thing on 1 or N processes; it must split evenly over the ranks.
    Every rank takes the same number of steps (the epoch's size // the global batch), so no rank waits
    for a last batch another does not have.
  - augmentation: a generator per rank, seeded from (train.seed, rank): different draws, reproducible.
  - gradients: DDP all-reduces their mean, the gradient of the global batch's mean loss (equal shares).
    BatchNorm normalizes each rank's share (train.sync_batchnorm=true: over the whole batch, CUDA only).
  - numbers: the losses read back are averaged over the ranks (the global batch's loss, as one process
    logs it, and a NaN on any rank is seen by all); the epoch's sums are added up.
  - decisions: rank 0 alone runs the plug-ins that watch the run (history, progress, monitor, doctor,
    TensorBoard, checkpoints of best weights) and writes the run directory; the action it takes (roll
    back, restart, stop) is broadcast, and every rank carries it out. A stop signal on any rank stops all
    at the same step.

Multi-node runs need the run directory on a file system every node sees (a rollback or resume reads rank
0's checkpoints on every rank).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

SEED_STRIDE = 1_000_003  # rank r augments with seed + r x this (a prime: no two ranks' seeds collide)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global index batch (its length a multiple of size)."""
        if self.size == 1:
            return indices
        part = len(indices) // self.size
        return indices[self.rank * part:(self.rank + 1) * part]

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks of a float tensor (every rank gets it)."""
        return tensor if self.size == 1 else self.sum(tensor) / self.size

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value):
        """Rank 0's `value` on every rank (any picklable object)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list | None:
        """Every rank's `value`, in rank order, on rank 0 (None elsewhere)."""
        if self.size == 1:
            return [value]
        values = [None] * self.size if self.main else None
        dist.gather_object(value, values, dst=0)
        return values

    def augmentation_seed(self, seed: int) -> int:
        """This rank's augmentation seed: train.seed in one process (the stream a run has always drawn)."""
        return seed + SEED_STRIDE * self.rank

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every rank, before evaluating: each rank's
        last forward updated them from its own share."""
        if self.size == 1:
            return
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def current() -> World:
    """The world this process is in: the initialized process group's, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def launched() -> bool:
    """Started by torchrun (or torch.distributed.run) with more than one process?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: str, cuda_available: bool) -> str:
    """NCCL where the run trains on CUDA (train.device auto or cuda, a GPU present), else gloo."""
    return "nccl" if device != "cpu" and cuda_available else "gloo"


def setup(device: str = "auto") -> World:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA, each process on GPU LOCAL_RANK); one
    process: World(). Idempotent."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return current()
    backend = backend_for(device, torch.cuda.is_available())
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return current()


def teardown() -> None:
    """Leave the process group. What still refers to it from a reference cycle (DDP's wrapper and reducer,
    the work of its last collectives) is collected first: left to the interpreter's exit, a gloo thread is
    destroyed unjoined there and the rank aborts after its run has finished ("terminate called without an
    active exception", SIGABRT; 11 of 40 two-process runs on one machine, 0 of 40 with this collection)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def launch(argv: list[str], processes: int) -> tuple[int, int | None]:
    """`cnntricks <argv>` in `processes` processes under torch.distributed.run's agent, run in this process
    (what `torchrun --standalone --nproc_per_node=N -m cnntricks <argv>` does): (the exit status, the signal
    that stopped it or None). A SIGTERM or Ctrl-C reaches the agent, which stops the ranks with SIGTERM; they
    checkpoint at the same step (a rank's failure stops the others the same way)."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun sets one thread per process; share the cores instead (train.threads still overrides)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # the ranks say what happened
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={processes}", "-m", "cnntricks", *argv])
    try:
        run(args)
    except SignalException as stop:
        return 128 + int(stop.sigval), int(stop.sigval)
    except ChildFailedError as failed:  # the ranks' own message is printed; their exit status is the command's
        codes = [failure.exitcode for failure in failed.failures.values()]
        return next((code for code in codes if code > 0), 1), None
    return 0, None
