"""imbalance.two_stage end to end: the head classes first, then the tail, in one run directory and one
history, with the head classes' classifier rows kept through the second stage."""
import pytest
import torch

from cnntricks.config import ConfigError, load
from cnntricks.rundir import read_history
from cnntricks.train.inference import load_predictor
from cnntricks.train.loop import fit

BASE = ["data.source=synthetic", "model.width=4", "model.depth=1", "train.threads=1", "optim.batch_size=16",
        "data.imbalance=10", "imbalance.two_stage=true"]


def test_two_stages_in_one_run_with_the_head_rows_kept(tmp_path):
    cfg = load(None, [*BASE, "train.epochs=3", "imbalance.stage2_epochs=1", "imbalance.stage2_passes=1",
                      "imbalance.stage2_lr=0.1", f"data.cache_dir={tmp_path / 'c'}"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    counts = summary["train_counts"]  # synthetic: 4 classes; head = at or above the median
    median = sorted(counts)[1:3]
    head = [c for c, n in enumerate(counts) if n >= sum(median) / 2]
    head_images = sum(counts[c] for c in head)
    tail_images = sum(n for c, n in enumerate(counts) if c not in head) + sum(round(0.1 * counts[c]) for c in head)
    assert summary["epochs"] == 3 and summary["steps"] == 2 * (head_images // 16) + tail_images // 16
    history = read_history(tmp_path / "run")
    events = [r for r in history if r.get("event") == "stage"]
    assert len(events) == 1 and events[0]["epoch"] == 2 and "stage 2 of 2 from epoch 3" in events[0]["message"]
    lrs = [r["lr"] for r in history if r["kind"] == "batch"]
    assert lrs[2 * (head_images // 16)] == pytest.approx(0.1 * 0.1)  # stage 2 restarts at stage2_lr x optim.lr

    # the head rows after the run are those at the end of stage 1: the epoch-2 checkpoint's
    cfg2 = load(None, [*BASE, "train.epochs=3", "imbalance.stage2_epochs=1", f"data.cache_dir={tmp_path / 'c'}",
                       "train.checkpoint_every=1"])
    fit(cfg2, tmp_path / "kept", progress=False)
    from cnntricks.rundir import load_tensors
    stage1 = load_tensors(tmp_path / "kept" / "checkpoints" / "epoch-0002" / "model.safetensors")
    final = load_predictor(tmp_path / "kept").predictor.model.state_dict()
    index = torch.tensor(head)
    assert torch.equal(final["head.weight"][index], stage1["head.weight"][index])
    tail = torch.tensor([c for c in range(len(counts)) if c not in head])
    assert not torch.equal(final["head.weight"][tail], stage1["head.weight"][tail])


def test_two_stage_refuses_what_it_cannot_combine():
    from cnntricks.train.resolve import resolve
    with pytest.raises(ConfigError, match="does not combine"):
        resolve(load(None, [*BASE, "imbalance.sampler=oversample"]))
    with pytest.raises(ConfigError, match="leaves no epoch"):
        resolve(load(None, [*BASE, "train.epochs=2", "imbalance.stage2_epochs=2"]))


def test_the_second_stage_defaults_are_the_measured_ones():
    """README, Class imbalance: at the study's ρ = 100 the seed §4 fine-tuning LR (x0.1) and one pass over
    the tail an epoch left the rarest classes at 0% recall; the full LR and passes as long as a
    first-stage epoch brought them back."""
    imbalance = load(None, []).imbalance
    assert imbalance.stage2_lr == 1.0 and imbalance.stage2_passes is None and imbalance.replay == 0.1
