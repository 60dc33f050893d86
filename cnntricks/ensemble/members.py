"""An ensemble's members: trained runs (one checkpoint each) and what they say about a split.

Each member is loaded through the one inference path (`load_predictor`): its own model, checkpoint,
preprocessing, input size and TTA. Members may differ in architecture and input size; they must
share the classes, and the images they are scored on must be the same ones in the same order (the
test split always is; the validation split is when the members share train.seed or data.split_seed).

k-fold members (data.folds=k) are grouped: the runs of one config that differ only in data.fold (and
train.seed) are one group, which must hold every fold once. A group's out-of-fold outputs are each
member's outputs on its own validation fold, folds in order: together, every training image once.
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


def default_name(run_dir: Path) -> str:
    """The run's folder name; a cross-validated trial's fold run (trial-0003/fold-1) with its trial's."""
    if run_dir.name.startswith("fold-") and run_dir.parent.name.startswith("trial-"):
        return f"{run_dir.parent.name}-{run_dir.name}"
    return run_dir.name


def load_member(run_dir: str | Path, checkpoint: str | None = None, name: str | None = None) -> Member:
    run_dir = Path(run_dir)
    loaded = load_predictor(run_dir, checkpoint=checkpoint)
    return Member(name or default_name(run_dir) + (f"@{loaded.checkpoint.name}" if checkpoint is not None else ""),
                  run_dir, loaded)


def check_classes(members: list[Member]) -> None:
    first = members[0]
    for member in members[1:]:
        if member.classes != first.classes:
            raise RunDirectoryError(f"ensemble members must predict the same classes: {member.run_dir} has "
                                    f"{member.classes}, {first.run_dir} has {first.classes}")


FOLD_SPECIFIC = (("data", "fold"), ("train", "seed"), ("train", "threads"))


def fold_groups(members: list[Member]) -> list[int] | None:
    """None when no member is a k-fold member; else each member's group (0, 1, ... in order of first
    appearance). Raises unless every member is one and every group holds each of the k folds once."""
    folded = [member.loaded.cfg.data.folds is not None for member in members]
    if not any(folded):
        return None
    if not all(folded):
        names = ", ".join(m.name for m, f in zip(members, folded) if not f)
        raise RunDirectoryError(f"members {names} are not k-fold members (data.folds) but the others are; fuse "
                                f"k-fold members with one another only")
    keys: list[str] = []
    groups = []
    for member in members:
        cfg = member.loaded.cfg
        described = cfg.to_dict()
        described["data"]["split_seed"] = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed
        for section, key in FOLD_SPECIFIC:
            described[section].pop(key, None)
        key = json.dumps(described, sort_keys=True, default=str)
        if key not in keys:
            keys.append(key)
        groups.append(keys.index(key))
    for group in range(len(keys)):
        inside = [m for m, g in zip(members, groups) if g == group]
        folds = inside[0].loaded.cfg.data.folds
        have = sorted(m.loaded.cfg.data.fold for m in inside)
        if have != list(range(folds)):
            raise RunDirectoryError(
                f"k-fold members {', '.join(m.name for m in inside)} hold folds {have} of data.folds={folds}: "
                f"out-of-fold predictions need each fold once; add the missing members (or drop the repeated "
                f"ones), or use --fusion mean or vote, which fit nothing")
    return groups


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

    def out_of_fold(self, members: list[Member], groups: list[int]) -> Outputs:
        """One output per group: its members' logits on their own validation folds, fold 0 first; the
        groups must have dealt the same images to the same folds."""
        logits, labels = [], None
        for group in sorted(set(groups)):
            inside = sorted((m for m, g in zip(members, groups) if g == group), key=lambda m: m.loaded.cfg.data.fold)
            stores = [self.store(member, "val") for member in inside]
            own = torch.cat([store.labels.cpu() for store in stores])
            if labels is None:
                labels, first = own, inside[0]
            elif not torch.equal(own, labels):
                raise RunDirectoryError(
                    f"{inside[0].run_dir} and {first.run_dir} were not cross-validated on the same folds (other data "
                    f"or data.split_seed); train every group with one data.split_seed, or use --fusion mean or vote")
            logits.append(torch.cat([m.loaded.predictor.logits(s.images).cpu() for m, s in zip(inside, stores)]))
        return Outputs(logits, labels, None)


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
