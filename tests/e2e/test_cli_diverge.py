"""A loss that becomes NaN or infinite (README: "A NaN or infinite loss stops the run (exit code 4)
with the step and the last good checkpoint named; nothing already written is touched")."""
from __future__ import annotations

import re

from e2e_helpers import SMALL, read_history

# Without normalization layers an LR of a million overflows within a few steps (seed §7: a "very
# high" learning rate makes the loss explode); a constant schedule uses it from the first step.
EXPLODE = ["optim.lr=1e6", "model.norm=none", "schedule.name=constant"]


def nonfinite_lines(run) -> tuple[list[dict], list[dict]]:
    history = read_history(run)
    return ([r for r in history if r["kind"] == "event" and r["event"] == "nonfinite"],
            [r for r in history if r["kind"] == "batch" and r["loss"] is None])


def test_divergence_from_the_start_exits_4_naming_the_step(user):
    result = user.run("train", *SMALL, *EXPLODE, "--run-dir", "run", "--quiet")
    assert result.code == 4, result
    step = int(re.search(r"at step (\d+)", result.err).group(1))
    assert "no checkpoint was written yet" in result.err and "optim.lr" in result.err
    assert "Traceback" not in result.err and "warning" not in result.err, result.err
    events, null_losses = nonfinite_lines(user.cwd / "run")
    assert [e["step"] for e in events] == [step] and [b["step"] for b in null_losses] == [step]
    assert not (user.cwd / "run" / "summary.json").exists()


def test_divergence_after_a_checkpoint_keeps_it_and_resume_recovers(user):
    assert user.run("train", *SMALL, "model.norm=none", "train.epochs=1", "--run-dir", "run", "--quiet").code == 0
    run = user.cwd / "run"
    good = run / "checkpoints" / "epoch-0001"
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    evaluated = user.run("evaluate", run, "--json")
    assert evaluated.code == 0, evaluated

    # The user raises the LR far too much and continues for two more epochs.
    result = user.run("train", "--resume", run, "train.epochs=3", "optim.lr=1e6", "schedule.name=constant", "--quiet")
    assert result.code == 4, result
    assert re.search(r"at step \d+ \(epoch 2\)", result.err), result.err
    assert str(good) in result.err  # the last good checkpoint, by its path
    events, null_losses = nonfinite_lines(run)
    assert len(events) == 1 and events[0]["epoch"] == 2 and null_losses[0]["step"] == events[0]["step"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch-0001"
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before  # intact
    assert user.run("evaluate", run, "--json").out == evaluated.out  # and loadable, with the same numbers

    # With a sane LR the run continues from that checkpoint; the failed attempt's lines are cut.
    recovered = user.run("train", "--resume", run, "train.epochs=3", "optim.lr=0.05", "--quiet")
    assert recovered.code == 0, recovered
    events, _ = nonfinite_lines(run)
    assert not events
    assert [r["epoch"] for r in read_history(run) if r["kind"] == "epoch"] == [1, 2, 3]
