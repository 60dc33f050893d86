"""Several processes, one run (train/distributed.py): 2-process gloo runs on this CPU, kept short.

A DDP run with the global batch split over 2 ranks takes the same steps as one process on that batch
(the gradient all-reduced is the mean over the global batch), logs the same global-batch losses, and
writes one run directory; `train.processes=2` starts it from the command line, and a run stopped by
SIGTERM resumes to the same weights as one never stopped.
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from cnntricks import config
from cnntricks.config import ConfigError
from cnntricks.rundir import latest_checkpoint, read_history
from cnntricks.train.distributed import World, backend_for, teardown
from cnntricks.train.loop import fit

# An MLP without dropout or BatchNorm, no augmentation, fp32: each step is a pure function of the batch, so
# the DDP step must equal the one-process step (BatchNorm would normalize each rank's half: not the same)
EXACT = ["data.source=synthetic", "model.name=mlp", "model.width=4", "train.threads=1", "optim.batch_size=32",
         "augment.policy=none", "train.precision=fp32", "doctor.mode=off", "train.monitor=off", "train.tta=false"]


def train_rank(rank: int, world: int, init_file: str, overrides: list[str], run_dir: str) -> None:
    """One rank of a gloo process group, as torchrun would start it (spawned by the tests below)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        fit(config.load(None, overrides), run_dir, progress=False)
    finally:
        teardown()  # collects DDP's leftovers before leaving the group (a gloo abort at exit otherwise)


def train_ddp(tmp_path, overrides: list[str], run_dir, world: int = 2) -> None:
    init_file = tmp_path / f"init-{time.monotonic_ns()}"
    mp.spawn(train_rank, args=(world, str(init_file), overrides, str(run_dir)), nprocs=world, join=True)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run_dir) / "model.safetensors")


def batch_losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_history(run_dir) if r.get("kind") == "batch"]


def test_one_process_is_a_world_of_one_where_every_helper_is_the_identity():
    world, batch = World(), torch.arange(8)
    assert world.main and not world.distributed
    assert torch.equal(world.share(batch), batch) and world.broadcast("x") == "x" and world.gather(3) == [3]
    assert torch.equal(World(1, 2).share(batch), torch.tensor([4, 5, 6, 7]))  # rank 1's half of the global batch
    assert torch.equal(World(0, 4).share(batch), torch.tensor([0, 1]))


def test_the_backend_is_nccl_on_cuda_and_gloo_elsewhere():
    assert backend_for("auto", cuda_available=True) == "nccl" and backend_for("cuda", True) == "nccl"
    assert backend_for("cpu", cuda_available=True) == "gloo" and backend_for("auto", False) == "gloo"


def test_every_rank_stops_together_on_a_nan_and_at_the_target_accuracy(tmp_path):
    with pytest.raises(Exception) as failed:  # every rank raises TrainingDiverged at the same step: no hang
        train_ddp(tmp_path, [*EXACT, "train.epochs=2", "optim.lr=1e6", "schedule.warmup_epochs=0"], tmp_path / "nan")
    assert "TrainingDiverged" in str(failed.value) and re.search(r"loss is (nan|inf|-inf) at step", str(failed.value))
    nonfinite = [r for r in read_history(tmp_path / "nan") if r.get("event") == "nonfinite"]
    assert len(nonfinite) == 1  # rank 0 wrote it once
    train_ddp(tmp_path, [*EXACT, "train.epochs=6", "train.target_accuracy=0.2"], tmp_path / "target")
    summary = json.loads((tmp_path / "target" / "summary.json").read_text())
    assert summary["stop_reason"] == "target_accuracy" and summary["epochs"] < 6  # both ranks stopped there


def test_sync_batchnorm_is_refused_on_the_cpu_with_what_to_do(tmp_path):
    with pytest.raises(Exception) as failed:
        train_ddp(tmp_path, [*EXACT, "model.name=fastnet", "train.sync_batchnorm=true", "train.epochs=1"],
                  tmp_path / "sync")
    assert "train.sync_batchnorm=true needs CUDA" in str(failed.value) and "leave it false" in str(failed.value)


def test_ddp_steps_equal_the_one_process_steps_on_the_same_global_batch(tmp_path):
    # 2 x 14 steps of 32 images (460 training images); a sampler draws the epoch's order (the same on every rank)
    overrides = [*EXACT, "train.epochs=2", "imbalance.sampler=class_balanced"]
    fit(config.load(None, overrides), tmp_path / "one", progress=False)
    train_ddp(tmp_path, overrides, tmp_path / "two")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:  # the same 28 steps: equal within float rounding (the mean taken in two halves)
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)
    # rank 0 wrote the one run directory: the global batch's losses, every step, as one process logs them
    assert len(batch_losses(tmp_path / "two")) == 28
    torch.testing.assert_close(torch.tensor(batch_losses(tmp_path / "two")), torch.tensor(batch_losses(tmp_path / "one")),
                               rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["steps"] == 28 and summary["epochs"] == 2
    assert not list((tmp_path / "two").glob("*.tmp*"))


def test_a_global_batch_that_does_not_split_evenly_is_refused_on_every_rank(tmp_path):
    with pytest.raises(Exception) as failed:  # mp.spawn re-raises a rank's error as ProcessRaisedException
        train_ddp(tmp_path, [*EXACT, "optim.batch_size=33", "train.epochs=1"], tmp_path / "odd")
    assert "optim.batch_size=33 does not split evenly over 2 processes; choose a multiple of 2" in str(failed.value)
    with pytest.raises(ConfigError, match="train.processes: 0 is out of range; it must be >= 1"):
        config.load(None, ["train.processes=0"])


def test_train_processes_2_from_the_command_line_stops_on_sigterm_and_resumes_to_the_same_weights(user, tmp_path):
    """The launcher (torch.distributed.run) forwards SIGTERM to both ranks; they agree on the step, rank 0 writes
    the checkpoint, and --resume (2 processes again) ends where an uninterrupted 2-process run ends."""
    # flips: per-rank draws; 12 epochs of 28 steps, long enough for the signal to land inside the run
    overrides = [*EXACT, "augment.policy=flip", "train.epochs=12", "optim.batch_size=16", "model.width=32",
                 "optim.lr=0.02"]
    train_ddp(tmp_path, overrides, tmp_path / "reference")
    started = user.start("train", *overrides, "train.processes=2", "--run-dir", "ddp", "--quiet")
    run = user.cwd / "ddp"
    deadline = time.monotonic() + 120
    while latest_checkpoint(run) is None and time.monotonic() < deadline and started.process.poll() is None:
        time.sleep(0.05)
    assert latest_checkpoint(run) is not None, started.process.communicate()
    started.process.send_signal(signal.SIGTERM)
    started.process.communicate(timeout=120)
    summary = run / "summary.json"
    # 11 epochs are left when the first checkpoint appears: seconds of training, against a signal sent within 50 ms
    assert not summary.exists(), "the 2-process run finished before SIGTERM arrived: make it longer"
    resumed = user.spawn("train", "--resume", "ddp", "--quiet", timeout=240)
    assert resumed.code == 0, resumed.err
    assert "run directory: ddp (2 processes)" in resumed.err
    final, reference = weights(run), weights(tmp_path / "reference")
    for name in reference:  # per-rank augmentation generators saved and restored: bit for bit
        assert torch.equal(final[name], reference[name]), name
    assert json.loads(summary.read_text())["epochs"] == 12


def test_a_2_process_checkpoint_resumes_in_one_process_with_fresh_augmentation_draws(tmp_path):
    overrides = [*EXACT, "augment.policy=flip", "train.epochs=1"]
    train_ddp(tmp_path, overrides, tmp_path / "run")
    more = config.load(None, [*overrides, "train.epochs=2"])
    summary = fit(more, tmp_path / "run", resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["steps"] == 28
