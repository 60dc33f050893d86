"""`transfer.strategy=auto`: measure where the new data sits in the seed's 2x2 table, and pick.

Seed §4: "the two most important factors are the size of the new data set (small or big), and its
similarity to the original data set". Both are measured before the model is built:
  size        training images per class; big from BIG_PER_CLASS on
  similarity  linear probes of the frozen source network (probe.py), fitted on two thirds of the
              training split and scored on the held-out third: the data is similar to the source's
              when the top stage's features classify it about as well as the best stage's
              (within SIMILAR_MARGIN); when an earlier stage's features are clearly better, the top
              stage has specialized on the source's task (Yosinski et al. 2014) and the data is different
The cell gives the strategy (CELLS). The seed's advice per cell, and what `cnntricks experiment
transfer` measured (Fashion-MNIST 0-4 -> 5-9 and -> letters, 20 and 500 images per class, 3 seeds;
docs/results.md), which CELLS follows where the two disagree:
  similar, small    seed: a linear classifier on the top features ("the CNN codes"); measured: the
                    linear classifier 3.5 points behind fine-tuning the top stage -> top
  similar, big      seed: "fine-tune a few top layers ... with a small learning rate" -> top
  different, small  seed: "the SVM classifier on activations/features from somewhere earlier in the
                    network"; measured: 20+ points behind fine-tuning -> top
  different, big    seed: fine-tune "a large number of layers" with small learning rates -> all
`linear` and `linear@stageK` stay as strategies to choose by hand (seconds, no epochs).

Neither the probes nor batch-norm statistics tell when training from scratch beats every
fine-tuning strategy (the study: three cells of four). A race does (train/race.py): with
`transfer.race=true` (the default) the table's strategy and `scratch` are trained on the same two
thirds and scored on the same held-out third, and the winner is the advice (`Advice.raced`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from cnntricks.config import Config
from cnntricks.data.split import stratified_split
from cnntricks.data.store import Store
from cnntricks.transfer.probe import pretrained_model, probe

BIG_PER_CLASS = 100     # images per class from which a data set is "big" (the study's cells: 10-50 and 1000+)
SIMILAR_MARGIN = 0.02   # the top stage's probe within this of the best stage's: similar data
HELD_OUT = 1 / 3        # share of the training split the probes are scored on

CELLS = {(True, False): "top", (True, True): "top", (False, False): "top", (False, True): "all"}  # (similar, big)
SEED_CELLS = {(True, False): "linear", (True, True): "top", (False, False): "linear@stage{best}",
              (False, True): "all"}  # the seed's own advice, for the record (Advice.seed_says)


@dataclass
class Advice:
    images_per_class: float
    probe_acc: list[float]          # held-out accuracy of a linear probe per stage, bottom first
    similar: bool
    big: bool
    strategy: str
    seconds: float = 0.0
    source: str = ""
    table: str = ""                 # the strategy the table gave (before a race); "" = strategy
    race: dict | None = None        # train/race.py: {"accuracy": {strategy: held-out acc}, "trained", "scored", "seconds"}
    thresholds: dict = field(default_factory=lambda: {"big_per_class": BIG_PER_CLASS,
                                                      "similar_margin": SIMILAR_MARGIN})

    @property
    def cell(self) -> str:
        return f"{'similar' if self.similar else 'different'}, {'big' if self.big else 'small'}"

    def reason(self) -> str:
        top, stage = self.probe_acc[-1], self.best_stage
        best = self.probe_acc[stage]
        size = (f"{self.images_per_class:.0f} images per class ({'>=' if self.big else '<'} {BIG_PER_CLASS}: "
                f"{'big' if self.big else 'small'})")
        if self.similar:
            similarity = (f"the top stage's features classify it as well as any ({top:.3f}, best {best:.3f} at "
                          f"stage {stage}): similar to the source's data")
        else:
            similarity = (f"stage {stage}'s features classify it better than the top stage's ({best:.3f} > "
                          f"{top:.3f} + {SIMILAR_MARGIN}): different from the source's data")
        seed, table = self.seed_says, self.table or self.strategy
        measured = "" if seed == table else f" (the seed says {seed}; measured better: {table})"
        text = f"{size}; {similarity}; cell '{self.cell}' -> transfer.strategy={table}{measured}"
        if self.race:
            scores = ", ".join(f"{name} {acc:.3f}" for name, acc in self.race["accuracy"].items())
            text += (f"; race on the training split ({self.race['trained']} images trained, {self.race['scored']} "
                     f"held out): {scores} -> transfer.strategy={self.strategy}")
        return text

    @property
    def best_stage(self) -> int:
        """The stage whose probe scored highest (the higher one on a tie)."""
        return max(range(len(self.probe_acc)), key=lambda k: (self.probe_acc[k], k))

    @property
    def seed_says(self) -> str:
        return SEED_CELLS[self.similar, self.big].format(best=self.best_stage)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cell": self.cell, "seed_says": self.seed_says, "reason": self.reason()}

    def raced(self, accuracy: dict[str, float], trained: int, scored: int, seconds: float) -> Advice:
        """This advice after a race: the strategy with the best held-out accuracy (the table's on a tie)."""
        table = self.table or self.strategy
        winner = max(accuracy, key=lambda name: (accuracy[name], name == table))
        race = {"accuracy": accuracy, "trained": trained, "scored": scored, "seconds": seconds}
        return dataclasses.replace(self, strategy=winner, table=table, race=race, seconds=self.seconds + seconds)

    def apply(self, cfg: Config) -> Config:
        """`cfg` with the chosen strategy (what config.yaml keeps: a resume needs no advice)."""
        return with_strategy(cfg, self.strategy)


def with_strategy(cfg: Config, strategy: str) -> Config:
    """`cfg` with transfer.strategy=`strategy`, the rest of the recipe as it is."""
    return dataclasses.replace(cfg, transfer=dataclasses.replace(cfg.transfer, strategy=strategy))


def decide(images_per_class: float, probe_acc: list[float]) -> tuple[bool, bool, str]:
    """(similar, big, strategy) from the measurements (the module docstring's table)."""
    best = max(probe_acc)
    similar = probe_acc[-1] >= best - SIMILAR_MARGIN
    big = images_per_class >= BIG_PER_CLASS
    return similar, big, CELLS[similar, big]


def held_out(train: Store, seed: int) -> tuple[Store, Store]:
    """(two thirds, the held-out third) of a training split, stratified and seeded: the probes and the race."""
    keep, held = stratified_split(train.labels, HELD_OUT, torch.Generator().manual_seed(seed), keep_each=1)
    part = lambda idx: Store(train.images[idx], train.labels[idx], train.classes)  # noqa: E731
    return part(keep), part(held)


def advise(cfg: Config, splits, device: torch.device) -> Advice:
    """Probe the source weights on the training split (held-out third) and pick the cell and strategy."""
    start = time.perf_counter()
    train = splits.train
    classes = max(len(train.classes), 1)
    model, preprocess, loaded = pretrained_model(cfg, splits, device)
    fitted, held = held_out(train, cfg.train.seed)
    rows = probe(model, preprocess, fitted, held, device, seed=cfg.train.seed)
    accuracies = [row.test_acc for row in rows]
    images_per_class = len(train) / classes
    similar, big, strategy = decide(images_per_class, accuracies)
    return Advice(images_per_class, accuracies, similar, big, strategy, time.perf_counter() - start,
                  str(cfg.model.pretrained))
