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
        seed = self.seed_says
        measured = "" if seed == self.strategy else f" (the seed says {seed}; measured better: {self.strategy})"
        return f"{size}; {similarity}; cell '{self.cell}' -> transfer.strategy={self.strategy}{measured}"

    @property
    def best_stage(self) -> int:
        """The stage whose probe scored highest (the higher one on a tie)."""
        return max(range(len(self.probe_acc)), key=lambda k: (self.probe_acc[k], k))

    @property
    def seed_says(self) -> str:
        return SEED_CELLS[self.similar, self.big].format(best=self.best_stage)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cell": self.cell, "seed_says": self.seed_says, "reason": self.reason()}

    def apply(self, cfg: Config) -> Config:
        """`cfg` with the chosen strategy (what config.yaml keeps: a resume needs no advice)."""
        return dataclasses.replace(cfg, transfer=dataclasses.replace(cfg.transfer, strategy=self.strategy))


def decide(images_per_class: float, probe_acc: list[float]) -> tuple[bool, bool, str]:
    """(similar, big, strategy) from the measurements (the module docstring's table)."""
    best = max(probe_acc)
    similar = probe_acc[-1] >= best - SIMILAR_MARGIN
    big = images_per_class >= BIG_PER_CLASS
    return similar, big, CELLS[similar, big]


def advise(cfg: Config, splits, device: torch.device) -> Advice:
    """Probe the source weights on the training split (held-out third) and pick the cell and strategy."""
    start = time.perf_counter()
    train = splits.train
    classes = max(len(train.classes), 1)
    model, preprocess, loaded = pretrained_model(cfg, splits, device)
    keep, held = stratified_split(train.labels, HELD_OUT, torch.Generator().manual_seed(cfg.train.seed), keep_each=1)
    part = lambda idx: Store(train.images[idx], train.labels[idx], train.classes)  # noqa: E731
    rows = probe(model, preprocess, part(keep), part(held), device, seed=cfg.train.seed)
    accuracies = [row.test_acc for row in rows]
    images_per_class = len(train) / classes
    similar, big, strategy = decide(images_per_class, accuracies)
    return Advice(images_per_class, accuracies, similar, big, strategy, time.perf_counter() - start,
                  str(cfg.model.pretrained))
