"""The checks on the evidence itself: a doctor that reads a damaged or incomplete run must not call it
healthy. `unreadable`: lines, values or files left out as unreadable (records.py says which);
`unchecked`: checks that had nothing to read (no batch line with a loss, no epoch line with both
accuracies), so their silence says nothing."""
from __future__ import annotations

from cnntricks.doctor.checks import MIN_EPOCHS, MIN_LOSSES, register
from cnntricks.doctor.evidence import Evidence
from cnntricks.doctor.findings import Finding

EXAMPLES = 3  # problems quoted in the finding; the rest are counted
FORMAT = "the format in cnntricks/rundir.py's docstring (README: \"The run directory\")"
LOSS_CHECKS = "lr_diverged, lr_too_high, lr_too_low, batch_too_small"
ACCURACY_CHECKS = "overfitting, underfitting, plateau"


@register
def check_unreadable(evidence: Evidence) -> list[Finding]:
    problems = evidence.problems
    if not problems:
        return []
    more = f"; and {len(problems) - EXAMPLES} more" if len(problems) > EXAMPLES else ""
    return [Finding(id="unreadable", severity="warning",
                    title=f"{len(problems)} part{'s' if len(problems) != 1 else ''} of the run directory could not "
                          "be read",
                    evidence="; ".join(problems[:EXAMPLES]) + more,
                    explanation="Lines that are not JSON objects, records of an unknown kind or without their step, "
                                "values of the wrong type and files that cannot be parsed were left out; the "
                                "verdict rests on the rest only, so a fault they hold cannot be seen.",
                    advice=f"Check what wrote these files (another tool, a full disk, a hand edit) against {FORMAT}; "
                           "a run written by cnntricks train has none of these.")]


def missing_losses(evidence: Evidence) -> tuple[str, bool] | None:
    """(why the loss-curve checks had nothing to read, whether that is by design), or None when they had."""
    if not evidence.batches:
        if any(e.get("event") == "head_fitted" for e in evidence.events):  # transfer.strategy=linear
            return "no gradient steps were taken (the head is a logistic regression fitted on frozen features)", True
        if evidence.source != "cnntricks":  # another tool's log: one line per epoch is its format, not a fault
            return f"the {evidence.source} log has no per-batch losses (it logs epochs)", True
        return "history.jsonl has no batch lines", False
    if not any("loss" in b for b in evidence.batches):  # all null (non-finite): nonfinite says it
        return "its batch lines have no 'loss'", False
    if 0 < len(evidence.losses[1]) < MIN_LOSSES and evidence.nonfinite is None:
        return (f"not enough steps to judge the learning rate ({len(evidence.losses[1])} loss values; the "
                f"learning-rate checks need {MIN_LOSSES})"), True
    return None


def missing_accuracies(evidence: Evidence) -> tuple[str, bool] | None:
    """(why the accuracy checks had nothing to read, whether that is by design), or None when they had."""
    epochs = evidence.epochs
    if not epochs:
        return "history.jsonl has no epoch lines", False
    both = sum(e.get("train_acc") is not None and e.get("val_acc") is not None for e in epochs)
    if both >= MIN_EPOCHS:
        return None
    if both:
        return (f"not enough epochs to judge them ({both} epoch line{'s' if both > 1 else ''} with both accuracies; "
                f"overfitting needs 2, underfitting {MIN_EPOCHS})"), True
    if not any(e.get("train_acc") is not None for e in epochs):
        return "its epoch lines have no 'train_acc'", False
    if all("val_acc" in e for e in epochs):  # written as null: the trainer without a validation split
        return "validation accuracy was not measured (val_acc null in every epoch line: no validation split)", True
    return "its epoch lines have no 'val_acc'", False


@register
def check_unchecked(evidence: Evidence) -> list[Finding]:
    gaps = []
    if (found := missing_losses(evidence)) is not None:
        gaps.append((f"the loss-curve checks ({LOSS_CHECKS}) could not run: {found[0]}", found[1]))
    if (found := missing_accuracies(evidence)) is not None:
        gaps.append((f"the accuracy checks ({ACCURACY_CHECKS}) could not run: {found[0]}", found[1]))
    if not gaps:
        return []
    # another tool's log holds what its user chose to log: a missing key is not a fault of the run
    by_design = all(chosen for _, chosen in gaps) or evidence.source != "cnntricks"
    advice = (f"Write every batch's loss and every epoch's train_acc and val_acc to history.jsonl, in "
              f"{FORMAT}; with cnntricks train, keep data.val_fraction above 0 for the accuracy checks.")
    if evidence.source != "cnntricks":
        advice = ("Log the loss every step and the train and validation accuracy every epoch (Lightning: "
                  "self.log('train_loss', loss) in training_step logs per step; Keras' CSVLogger logs epochs only), "
                  "or name your columns with --map (README: \"The doctor reads other tools' runs\").")
    return [Finding(id="unchecked", severity="info" if by_design else "warning",
                    title="Some checks could not run: their silence says nothing",
                    evidence="; ".join(text for text, _ in gaps),
                    explanation="The doctor judges only what the run's files show; without the lines or keys these "
                                "checks read, it cannot tell a healthy run from a broken one.",
                    advice=advice)]
