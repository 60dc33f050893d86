"""`transfer.strategy=auto`'s race: the table's strategy against training from scratch, on the user's data.

The advisor's probes place the data in the seed's table (transfer/advisor.py) but cannot tell when a
network trained from scratch beats every way of fine-tuning, which the study measured in three cells
of four (docs/results.md, transfer). A short race can: both contenders train with the run's own
recipe on two thirds of the training split (the probes' split) and are scored on the held-out third;
the better one is the advice. `benchmarks/transfer_race.py` measured it against a finished study.

The racers are bare `fit` runs (no monitor, no doctor) in a temporary folder; they cost about 2 x 2/3
of the run. `choose` (the probes, then the race) restores the global random state afterwards, so
the run that follows is exactly the run given the chosen strategy by hand (a test checks it).
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from cnntricks.config import Config
from cnntricks.data.store import Splits
from cnntricks.train.interrupt import Interrupted
from cnntricks.transfer.advisor import Advice, advise, held_out, with_strategy

RIVAL = "scratch"


def choose(cfg: Config, splits: Splits, device: torch.device,
           say: Callable[[str], None] = lambda message: None) -> Advice:
    """`transfer.strategy=auto`: the probes and the table, then (transfer.race) the race; no random state used up."""
    devices = [device] if device.type == "cuda" else []
    # The probes build a model and the racers train: draws of their own. Their warnings are the run's
    # (the same config and data), which the run says once itself.
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        advice = advise(cfg, splits, device)
        return race(cfg, splits, advice, say) if cfg.transfer.race else advice


def race(cfg: Config, splits: Splits, advice: Advice, say: Callable[[str], None] = lambda message: None) -> Advice:
    """`advice` after racing its strategy against `scratch` (unchanged when it is `scratch` already)."""
    if advice.strategy == RIVAL:
        return advice
    start = time.perf_counter()
    accuracy, trained, scored = held_out_accuracy(cfg, splits, (advice.strategy, RIVAL), say)
    return advice.raced(accuracy, trained, scored, time.perf_counter() - start)


def held_out_accuracy(cfg: Config, splits: Splits, strategies: tuple[str, ...],
                      say: Callable[[str], None] = lambda message: None) -> tuple[dict[str, float], int, int]:
    """({strategy: accuracy on the held-out third}, images trained, images scored): `cfg` with each
    strategy trained on two thirds of the training split."""
    from cnntricks.train.loop import fit  # the loop imports this module: the race runs the loop
    trained, scored = held_out(splits.train, cfg.train.seed)
    parts = Splits(train=trained, val=splits.val, test=scored, source=splits.source)
    accuracy = {}
    with tempfile.TemporaryDirectory(prefix="cnntricks-race-") as folder:
        for strategy in strategies:
            say(f"transfer.strategy=auto: racing {strategy} on {len(trained)} training images "
                f"({cfg.train.epochs} epochs), scored on {len(scored)} held out")
            try:
                summary = fit(with_strategy(cfg, strategy), Path(folder) / strategy, progress=False, splits=parts)
            except Interrupted as stop:  # its checkpoint is in the temporary folder: nothing to resume from
                raise Interrupted(stop.signum) from None
            accuracy[strategy] = summary["test_acc"]
    return accuracy, len(trained), len(scored)
