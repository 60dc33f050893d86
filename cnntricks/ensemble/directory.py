"""The ensemble directory: built once from its members, then evaluated and predicted like a run.

    ens/
      ensemble.json        format, the fusion and what its fit found, the members (the run directory
                           of each, relative to ens/ where it can be, and its checkpoint)
      fusion.safetensors   the fitted tensors (weighted, stack, features; with k-fold members, their groups)
      summary.json         the ensemble's test figures under the run's keys (test_acc, test_loss,
                           per_class, ...), test_ece, and "ensemble": each member's figures, the best
                           member, the gain, the pairwise disagreement
      members/<name>/      with --copy: each member's run files and its one checkpoint
      report/              index.html and figures (cnntricks.report draws it)

A directory is written as ens.partial/ and renamed when complete: a killed build leaves no
half-written ensemble.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from cnntricks.config import ConfigError
from cnntricks.ensemble.fusion import FUSIONS, Fusion, Outputs, calibration_error, create_fusion, disagreement
from cnntricks.ensemble.members import Member, MemberData, check_classes, file_outputs, fold_groups, load_member
from cnntricks.rundir import (CHECKPOINTS, ENSEMBLE, SUMMARY, copy_run_files, RunDirectoryError, load_tensors, read_json,
                              save_tensors, write_atomic, write_json)
from cnntricks.train.inference import metrics

FUSION_FILE, MEMBERS = "fusion.safetensors", "members"
FORMAT = 1


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE).is_file()


@dataclass
class Ensemble:
    path: Path | None
    members: list[Member]
    fusion: Fusion

    def outputs(self, split: str, data: MemberData | None = None) -> Outputs:
        return (data or MemberData()).outputs(self.members, split, self.fusion.reads_features)

    def evaluate(self, split: str = "test", data: MemberData | None = None) -> dict:
        """The run's evaluation (loss, acc, balanced_acc, per_class with names, confusion) of the fused
        prediction on `split`, plus its calibration error and each member's figures."""
        return scores(self.members, self.fusion, self.outputs(split, data))

    def predict_files(self, paths: list[str | Path]) -> torch.Tensor:
        """(N, classes) probabilities of image files, each member reading them at its own input size."""
        return self.fusion.log_probs(file_outputs(self.members, paths, self.fusion.reads_features)).exp()

    @property
    def classes(self) -> list[str]:
        return self.members[0].classes


def scores(members: list[Member], fusion: Fusion, outputs: Outputs) -> dict:
    classes = members[0].classes
    log_probs = fusion.log_probs(outputs)
    result = metrics(log_probs, outputs.labels, len(classes))
    for row in result["per_class"]:
        row["name"] = classes[row["class"]]
    result["ece"] = calibration_error(log_probs, outputs.labels)
    result["members"] = []
    for member, logits in zip(members, outputs.logits):
        own = metrics(logits, outputs.labels, len(classes))
        result["members"].append({"name": member.name, "acc": own["acc"], "loss": own["loss"],
                                  "ece": calibration_error(torch.log_softmax(logits, 1), outputs.labels)})
    pairwise = disagreement(outputs.logits)
    count = len(members)
    result["disagreement"] = [[round(float(v), 6) for v in row] for row in pairwise]
    result["mean_disagreement"] = (float(pairwise.sum() / (count * (count - 1))) if count > 1 else 0.0)
    return result


def reference(run_dir: Path, out_dir: Path) -> str:
    """How ensemble.json names a member's run: relative to the ensemble where both share a root."""
    try:
        return os.path.relpath(run_dir.resolve(), out_dir.resolve())
    except ValueError:  # another drive
        return str(run_dir.resolve())


def copy_member(member: Member, target: Path) -> None:
    """The member's run files and its one checkpoint, as a run directory that predicts the same."""
    target.mkdir(parents=True)
    copy_run_files(member.run_dir, target)
    inside = Path(member.checkpoint)
    if inside.is_absolute():  # a checkpoint outside its run: kept under checkpoints/ by its name
        inside = Path(CHECKPOINTS) / inside.name
    shutil.copytree(member.loaded.checkpoint, target / inside)
    if inside.parent.name == CHECKPOINTS:
        write_atomic(target / CHECKPOINTS / "latest", inside.name + "\n")


def unique_names(members: list[Member]) -> None:
    seen: dict[str, int] = {}
    for member in members:
        count = seen.get(member.name, 0)
        seen[member.name] = count + 1
        if count:
            member.name = f"{member.name}-{count + 1}"


def check_out_dir(out_dir: Path, members_inside: bool = False) -> None:
    """`out_dir` must be new or empty (or hold only the members/ that --train wrote)."""
    if is_ensemble(out_dir):
        raise RunDirectoryError(f"{out_dir} is already an ensemble; choose another --out, or delete it first")
    allowed = {MEMBERS} if members_inside else set()
    if out_dir.exists() and {p.name for p in out_dir.iterdir()} - allowed:
        raise RunDirectoryError(f"{out_dir} already exists and is not empty; choose another --out")


def build_ensemble(sources: list[tuple[str | Path, str | None]], out_dir: str | Path, fusion: str = "mean",
                   copy: bool = False, seed: int = 0, say=print, members_inside: bool = False) -> dict:
    """Write the ensemble of `sources` ([(run directory, checkpoint or None for the newest)]) with
    `fusion` to `out_dir`; returns its summary.json. Fusion is fitted on the validation (or, for
    `features`, the training) split, or for k-fold members on their out-of-fold outputs; the test split
    only scores. `members_inside`: the members are
    out_dir/members/* (cnntricks ensemble --train); the files are then written beside them, ensemble.json
    last, instead of in a folder renamed when complete."""
    out_dir = Path(out_dir)
    if fusion not in FUSIONS:
        raise ConfigError(f"--fusion must be one of {', '.join(FUSIONS.names())}, got {fusion!r}")
    if len(sources) < 2:
        raise ConfigError(f"an ensemble needs 2 or more members, got {len(sources)}")
    if copy and members_inside:
        raise ConfigError("--copy is for members outside the ensemble; --train's members are inside it already")
    check_out_dir(out_dir, members_inside)
    members = [load_member(run_dir, checkpoint) for run_dir, checkpoint in sources]
    unique_names(members)
    check_classes(members)
    method, data = create_fusion(fusion), MemberData()
    groups = fold_groups(members) if method.fits_on is not None else None
    fitted, fitted_on = None, method.fits_on
    if groups is not None:
        if method.fits_on != "validation":
            raise ConfigError(f"k-fold members train on different images, so the {fusion} fusion (fitted on the "
                              f"training split) has nothing common to fit on; use --fusion stack or weighted (fitted "
                              f"out of fold), or mean or vote")
        count = len(set(groups))
        say(f"ensemble: {len(members)} k-fold members in {count} group{'s' if count != 1 else ''}: their out-of-fold "
            f"outputs, to fit the {fusion} fusion")
        fitted, fitted_on = data.out_of_fold(members, groups), "out-of-fold validation"
        method.groups = groups
        method.fit(fitted, None, seed)
    elif method.fits_on is not None:
        split = "val" if method.fits_on == "validation" else "train"
        say(f"ensemble: {len(members)} members' {method.fits_on} outputs, to fit the {fusion} fusion")
        fitted = data.outputs(members, split, method.reads_features)
        method.fit(fitted if split == "val" else None, fitted if split == "train" else None, seed)
    say(f"ensemble: {len(members)} members on the test split")
    test = scores(members, method, data.outputs(members, "test", method.reads_features))
    best = max(test["members"], key=lambda m: m["acc"])

    partial = out_dir if members_inside else out_dir.with_name(out_dir.name + ".partial")
    if not members_inside:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    records = []
    for member in members:
        run = member.run_dir
        if copy:
            copy_member(member, partial / MEMBERS / member.name)
            run = out_dir / MEMBERS / member.name
        checkpoint = member.checkpoint
        if copy and Path(checkpoint).is_absolute():
            checkpoint = f"{CHECKPOINTS}/{Path(checkpoint).name}"
        records.append({"name": member.name, "run": reference(run, out_dir) if not copy else f"{MEMBERS}/{member.name}",
                        "checkpoint": checkpoint, "copied": copy,
                        "model": member.loaded.cfg.model.name, "input": list(member.input_shape)})
    record = {"format": FORMAT, "fusion": fusion, "fitted_on": fitted_on, "fit": method.describe(),
              "classes": members[0].classes, "members": records}
    if fitted is not None:
        record["fit"]["fitted_images"] = len(fitted.labels)
    if groups is not None:
        record["fit"]["groups"] = groups
    if method.state():
        write_atomic(partial / FUSION_FILE, lambda path: save_tensors(method.state(), path))
    summary = {"kind": "ensemble", "fusion": fusion, "members": len(members), "classes": members[0].classes,
               "test_acc": test["acc"], "test_loss": test["loss"], "test_balanced_acc": test["balanced_acc"],
               "test_macro_f1": test["macro_f1"], "test_ece": test["ece"], "per_class": test["per_class"],
               "confusion": test["confusion"],
               "ensemble": {"members": test["members"], "best_member": best["name"], "best_member_acc": best["acc"],
                            "gain": test["acc"] - best["acc"],
                            "mean_member_acc": sum(m["acc"] for m in test["members"]) / len(members),
                            "mean_disagreement": test["mean_disagreement"], "disagreement": test["disagreement"]}}
    write_json(partial / SUMMARY, summary)
    write_json(partial / ENSEMBLE, record)  # last: what makes the folder an ensemble
    if not members_inside:
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        partial.rename(out_dir)
    return summary


def load_ensemble(path: str | Path) -> Ensemble:
    path = Path(path)
    record = read_json(path / ENSEMBLE)
    if record is None:
        raise RunDirectoryError(f"{path} is not an ensemble directory (no {ENSEMBLE}); cnntricks ensemble writes them")
    if record.get("format") != FORMAT:
        raise RunDirectoryError(f"{path / ENSEMBLE} has format {record.get('format')}; this cnntricks reads {FORMAT}")
    members = []
    for entry in record["members"]:
        run = Path(entry["run"])
        run = run if run.is_absolute() else path / run
        if not run.is_dir():
            raise RunDirectoryError(f"member {entry['name']} of {path} is missing: {run} is not a directory (build "
                                    f"the ensemble with --copy to keep its members inside it)")
        members.append(load_member(run, entry["checkpoint"], entry["name"]))
    fusion = create_fusion(record["fusion"])
    if (path / FUSION_FILE).is_file():
        fusion.load(load_tensors(path / FUSION_FILE))
    elif record.get("fitted_on"):
        raise RunDirectoryError(f"{path} has no {FUSION_FILE} (the {record['fusion']} fusion's fitted weights)")
    return Ensemble(path, members, fusion)
