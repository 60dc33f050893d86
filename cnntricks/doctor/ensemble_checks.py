"""The doctor on an ensemble directory (seed §8): the ensemble's own figures (summary.json's
"ensemble": does it beat its best member, do its members disagree enough to correct each other) and
each member's run, diagnosed as a run. Reads ensemble.json and summary.json only, like the rest of
the doctor reads files."""
from __future__ import annotations

from pathlib import Path

from cnntricks.doctor.diagnose import diagnose
from cnntricks.doctor.findings import Finding
from cnntricks.rundir import ENSEMBLE, SUMMARY, RunDirectoryError, read_json

ALIKE = 0.25  # members that disagree on under a quarter of the images each gets wrong make the same mistakes
SEED_ENSEMBLE = ("Seed §8: \"an ensemble is usually significantly more accurate than a single learner\" — when its "
                 "members err on different images.")


def ensemble_findings(summary: dict, fusion: str) -> list[Finding]:
    info = summary.get("ensemble") or {}
    members = info.get("members") or []
    if not members or summary.get("test_acc") is None:
        return []
    found = []
    best, gain = info["best_member_acc"], info["gain"]
    if gain <= 0:
        fitted = fusion in ("weighted", "stack")
        found.append(Finding(
            "ensemble_no_gain", "warning", "The ensemble is no better than its best member",
            f"test accuracy {100 * summary['test_acc']:.2f}% against {100 * best:.2f}% for {info['best_member']} "
            f"({100 * gain:+.2f} points); the members' mean {100 * info['mean_member_acc']:.2f}%",
            SEED_ENSEMBLE + " A mean over members that are much worse than the best dilutes it, and members that "
            "agree add nothing.",
            ("Drop the weak members, or " if fitted else "Let the validation split weight the members (--fusion "
             "weighted), drop the weak ones, or ") + "make the members differ more: other initializations, "
            "architectures or augmentation (README, Ensembles).",
            change={} if fitted else {"--fusion": "weighted"}, figure="members.png"))
    errors = [1 - m["acc"] for m in members]
    mean_error = sum(errors) / len(errors)
    if len(members) > 1 and mean_error > 0 and info["mean_disagreement"] < ALIKE * mean_error:
        found.append(Finding(
            "ensemble_alike", "info", "The members make the same mistakes",
            f"two members disagree on {100 * info['mean_disagreement']:.2f}% of the test images on average, while "
            f"each gets {100 * mean_error:.2f}% wrong",
            SEED_ENSEMBLE + " Members that label the same images the same way cannot correct each other.",
            "Diversify the members: different architectures or input sizes, another augmentation policy, or "
            "checkpoints far apart (a snapshot ensemble).", figure="disagreement.png"))
    return found


def member_dirs(path: Path, record: dict) -> list[tuple[str, Path]]:
    dirs = []
    for entry in record.get("members", []):
        run = Path(entry["run"])
        dirs.append((entry["name"], run if run.is_absolute() else path / run))
    return dirs


def diagnose_ensemble(path: str | Path) -> list[tuple[str, list[Finding]]]:
    """[("ensemble", its findings), (member name, the member run's findings), ...]."""
    path = Path(path)
    record, summary = read_json(path / ENSEMBLE), read_json(path / SUMMARY)
    if record is None or summary is None:
        raise RunDirectoryError(f"{path} has no {ENSEMBLE} and {SUMMARY}: not a finished ensemble")
    scopes = [("ensemble", ensemble_findings(summary, record.get("fusion", "")))]
    for name, run in member_dirs(path, record):
        if not run.is_dir():
            raise RunDirectoryError(f"member {name} of {path} is missing: {run} is not a directory")
        scopes.append((name, diagnose(run)))
    return scopes
