"""An ensemble's members: trained runs (one checkpoint each) and what they say about a split.

Each member is loaded through the one inference path (`load_predictor`): its own model, checkpoint,
preprocessing, input size and TTA. Members may differ in architecture and input size; they must
share the classes, and the images they are scored on must be the same ones in the same order (the
test split always is; the validation split is when the members share train.seed or data.split_seed).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cnntricks.ensemble.fusion import Outputs
from cnntricks.rundir import RunDirectoryError
from cnntricks.train.inference import LoadedRun, load_predictor

SPLIT_NAMES = {"test": "test", "val": "validation", "train": "training"}


@dataclass
class Member:
    name: str
    run_dir: Path
    loaded: LoadedRun

    @property
    def classes(self) -> list[str]:
        return self.loaded.data["classes"]

    @property
    def checkpoint(self) -> str:
        """The checkpoint folder inside the run ("checkpoints/epoch-0012", "snapshots/cycle-03")."""
        try:
            return self.loaded.checkpoint.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:  # a checkpoint outside the run
            return str(self.loaded.checkpoint.resolve())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        data = self.loaded.data
        return data["channels"], data["height"], data["width"]


def load_member(run_dir: str | Path, checkpoint: str | None = None, name: str | None = None) -> Member:
    run_dir = Path(run_dir)
    loaded = load_predictor(run_dir, checkpoint=checkpoint)
    return Member(name or run_dir.name + (f"@{loaded.checkpoint.name}" if checkpoint is not None else ""), run_dir,
                  loaded)


def check_classes(members: list[Member]) -> None:
    first = members[0]
    for member in members[1:]:
        if member.classes != first.classes:
            raise RunDirectoryError(f"ensemble members must predict the same classes: {member.run_dir} has "
                                    f"{member.classes}, {first.run_dir} has {first.classes}")


class MemberData:
    """The splits of the members' data, loaded once per distinct data config and split seed."""

    def __init__(self):
        self._splits: dict[str, object] = {}

    def splits(self, member: Member):
        from cnntricks.data import load_splits
        cfg = member.loaded.cfg
        seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed
        key = json.dumps([dataclasses.asdict(cfg.data), seed], sort_keys=True, default=str)
        if key not in self._splits:
            self._splits[key] = load_splits(cfg.data, cfg.train.seed)
        return self._splits[key]

    def store(self, member: Member, split: str):
        store = getattr(self.splits(member), split)
        if store is None or len(store) == 0:
            raise RunDirectoryError(f"the {SPLIT_NAMES[split]} split of {member.run_dir} is empty; "
                                    + ("train the members with data.val_fraction > 0, or use --fusion mean or vote"
                                       if split == "val" else "choose another split"))
        return store

    def outputs(self, members: list[Member], split: str, features: bool = False) -> Outputs:
        """Every member's logits (and features) on `split`; the members must see the same images."""
        logits, feats, labels = [], [], None
        for member in members:
            store = self.store(member, split)
            if labels is None:
                labels, first = store.labels, member
            elif not torch.equal(store.labels, labels):
                raise RunDirectoryError(
                    f"{member.run_dir} and {first.run_dir} were not scored on the same {SPLIT_NAMES[split]} images "
                    f"(different data, or a validation split drawn with another seed); train the members with "
                    f"one data.split_seed (cnntricks ensemble --train does), or use --fusion mean or vote, "
                    f"which fit nothing")
            predictor = member.loaded.predictor
            logits.append(predictor.logits(store.images))
            if features:
                feats.append(predictor.features(store.images))
        return Outputs(logits, labels.cpu(), feats if features else None)


def file_outputs(members: list[Member], paths: list[str | Path], features: bool = False) -> Outputs:
    """Every member's logits (and features) on image files, each member reading them at its own size."""
    from cnntricks.data import load_images
    decoded: dict[tuple[int, int, int], torch.Tensor] = {}
    logits, feats = [], []
    for member in members:
        shape = member.input_shape
        if shape not in decoded:
            decoded[shape] = load_images(paths, shape[0], shape[1:])
        logits.append(member.loaded.predictor.logits(decoded[shape]))
        if features:
            feats.append(member.loaded.predictor.features(decoded[shape]))
    return Outputs(logits, torch.full((len(paths),), -1, dtype=torch.long), feats if features else None)
