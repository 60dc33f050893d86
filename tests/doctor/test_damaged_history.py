"""Hostile run directories: the doctor never raises, and never calls a broken or unreadable run healthy.

Each case writes a run (test_checks.write_run: config.yaml, data.json, history.jsonl) and then
damages it; the verdict must hold a finding of severity warning or error whose id is one the case
expects and whose title or evidence names the problem.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnntricks.doctor import diagnose, format_findings
from test_checks import healthy_epochs, healthy_losses, stat, write_run

ALARM = ("warning", "error")


def lines(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def batch(step, loss, epoch=1, **more):
    return {"kind": "batch", "step": step, "epoch": epoch, "loss": loss, "lr": 0.1, **more}


def healthy_history(n=200, epochs=4) -> list:
    """A correct history: batch lines with losses, epoch lines with both accuracies."""
    per_epoch = n // epochs
    return ([batch(i + 1, v, epoch=i // per_epoch + 1) for i, v in enumerate(healthy_losses(n))]
            + [{"kind": "epoch", "lr": 0.1, **row} for row in healthy_epochs(epochs)])


def with_history(path, text: str):
    run = write_run(path)
    (run / "history.jsonl").write_text(text)
    return run


# ---- the cases: name -> (write the run at a path, ids that may say it, words the message must hold)

def null_losses_without_an_event(path):
    return with_history(path, lines(*[batch(i + 1, v) for i, v in enumerate(healthy_losses(100)[:60])],
                                     *[batch(i, None) for i in range(61, 101)]))


def nan_and_infinity_written_by_another_tool(path):
    rows = [batch(i + 1, v) for i, v in enumerate(healthy_losses(100))]
    text = lines(*rows).replace('"loss": ' + json.dumps(rows[70]["loss"]), '"loss": NaN')
    return with_history(path, text.replace('"loss": ' + json.dumps(rows[80]["loss"]), '"loss": Infinity'))


def nan_from_step_one(path):
    return with_history(path, lines(*[batch(i + 1, math.nan) for i in range(50)]))  # json.dumps writes NaN


def null_train_loss_in_an_epoch_line(path):
    rows = healthy_epochs(3)
    rows[1]["train_loss"] = None
    return with_history(path, lines(*[batch(i + 1, v, epoch=i // 50 + 1) for i, v in enumerate(healthy_losses(150))],
                                     *[{"kind": "epoch", **r} for r in rows]))


def zero_bytes(path):
    return with_history(path, "")


def batch_lines_without_loss(path):
    return with_history(path, lines(*[{"kind": "batch", "step": i, "epoch": 1, "lr": 0.1} for i in range(1, 101)],
                                     *[{"kind": "epoch", **r} for r in healthy_epochs(2)]))


def epoch_lines_without_accuracies(path):
    rows = [{"kind": "epoch", "epoch": e, "train_loss": 1 / e, "val_loss": 0.5} for e in range(1, 5)]
    return with_history(path, lines(*[batch(i + 1, v) for i, v in enumerate(healthy_losses(200))], *rows))


def only_batch_lines(path):
    return with_history(path, lines(*[batch(i + 1, v) for i, v in enumerate(healthy_losses(200))]))


def only_epoch_lines(path):
    return with_history(path, lines(*[{"kind": "epoch", "lr": 0.1, **r} for r in healthy_epochs(6)]))


def only_events(path):
    return with_history(path, lines({"kind": "event", "epoch": 1, "step": 10, "event": "lr_divided", "message": "x"},
                                    {"kind": "event", "epoch": 2, "step": 20, "event": "target_reached"}))


def garbage_line_in_the_middle(path):
    rows = healthy_history()
    return with_history(path, lines(*rows[:50], "{not json", *rows[50:100], "[1, 2, 3]", *rows[100:]))


def garbage_line_in_stats(path):
    run = write_run(path, epochs=healthy_epochs(), stats=[stat(s) for s in range(1, 401, 40)])
    text = (run / "stats.jsonl").read_text().splitlines(keepends=True)
    (run / "stats.jsonl").write_text("".join(text[:3]) + "\x00\x01garbage\n" + "".join(text[3:]))
    return run


def values_of_the_wrong_type(path):
    rows = healthy_history()
    rows[10]["loss"] = "abc"
    rows[20]["step"] = "7"
    rows[-1]["val_acc"] = [1]
    rows[-2]["epoch"] = None
    rows.insert(30, {"step": 31, "loss": 1.0})  # no kind
    rows.insert(40, {"kind": "batch", "step": True, "loss": {"a": 1}})
    return with_history(path, lines(*rows))


def every_line_an_array(path):
    return with_history(path, lines(*[[i, 2.3] for i in range(1, 60)]))


def binary_garbage(path):
    run = write_run(path)
    (run / "history.jsonl").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return run


def deeply_nested_and_huge_integers(path):
    rows = [batch(i + 1, v) for i, v in enumerate(healthy_losses(100))]
    text = lines(*rows[:40], "[" * 100000 + "]" * 100000, *rows[40:])
    return with_history(path, text.replace('"loss": ' + json.dumps(rows[60]["loss"]), '"loss": 1' + "0" * 400))


def a_loss_of_1e308(path):
    losses = healthy_losses(100)[:50] + [1e308] * 50
    return with_history(path, lines(*[batch(i + 1, v) for i, v in enumerate(losses)],
                                     *[{"kind": "epoch", **r} for r in healthy_epochs(2)]))


def negative_accuracy(path):
    rows = healthy_history()
    for row in rows:
        if row["kind"] == "epoch":
            row["val_acc"] = -0.3
    return with_history(path, lines(*rows))


def steps_out_of_order_and_repeated(path):
    rows = [r for r in healthy_history() if r["kind"] == "batch"]
    rows = rows[:120] + rows[60:] + [rows[5]]  # a resume that appended, and one line far back
    return with_history(path, lines(*rows, *[{"kind": "epoch", **r} for r in healthy_epochs(4)]))


def garbage_config(path):
    run = with_history(path, lines(*healthy_history()))
    (run / "config.yaml").write_text("optim: [this is: not, {a config")
    return run


def config_not_a_mapping(path):
    run = with_history(path, lines(*healthy_history()))
    (run / "config.yaml").write_text("- just\n- a list\n")
    return run


def data_and_summary_not_json(path):
    run = with_history(path, lines(*healthy_history()))
    (run / "data.json").write_text("{\"classes\": [1, 2")
    (run / "summary.json").write_text("[1, 2, 3]")
    return run


def stats_of_the_wrong_shape(path):
    records = [stat(s) for s in range(1, 401, 40)]
    records[1]["layers"] = [1, 2]
    records[2]["params"] = {"stages.0.0.weight": "abc"}
    records[3]["input"] = {"mean": "zero", "std": 1.0}
    records[4]["grad_norm_total"] = "big"
    del records[5]["step"]
    records[6]["layers"]["stages.0.act"]["dead"] = [0.5]
    return write_run(path, epochs=healthy_epochs(), stats=records)


CASES = {
    "null losses without an event": (null_losses_without_an_event, {"nonfinite", "lr_diverged"}, "step 61"),
    "NaN and Infinity written by another tool": (nan_and_infinity_written_by_another_tool, {"nonfinite"}, "step 71"),
    "NaN from step 1": (nan_from_step_one, {"nonfinite", "lr_diverged"}, "step 1"),
    "null train_loss in an epoch line": (null_train_loss_in_an_epoch_line, {"nonfinite"}, "epoch 2"),
    "0-byte file": (zero_bytes, {"unchecked"}, "no batch lines"),
    "batch lines without loss": (batch_lines_without_loss, {"unchecked"}, "'loss'"),
    "epoch lines without accuracies": (epoch_lines_without_accuracies, {"unchecked"}, "train_acc"),
    "only batch lines": (only_batch_lines, {"unchecked"}, "no epoch lines"),
    "only epoch lines": (only_epoch_lines, {"unchecked"}, "no batch lines"),
    "only events": (only_events, {"unchecked"}, "no batch lines"),
    "a non-JSON line in the middle": (garbage_line_in_the_middle, {"unreadable"}, "line 51"),
    "a non-JSON line in stats.jsonl": (garbage_line_in_stats, {"unreadable"}, "stats.jsonl, line 4"),
    "values of the wrong type": (values_of_the_wrong_type, {"unreadable"}, "'abc'"),
    "every line an array": (every_line_an_array, {"unreadable", "unchecked"}, "not a JSON object"),
    "binary garbage": (binary_garbage, {"unreadable", "unchecked"}, "history.jsonl"),
    "deep nesting and a 400-digit loss": (deeply_nested_and_huge_integers, {"unreadable", "nonfinite"}, "line 41"),
    "a loss of 1e308": (a_loss_of_1e308, {"lr_diverged"}, "rose"),
    "negative accuracy": (negative_accuracy, {"unreadable"}, "-0.3"),
    "steps out of order and repeated": (steps_out_of_order_and_repeated, {"unreadable"}, "step 61 after 120"),
    "config.yaml that is not YAML": (garbage_config, {"unreadable"}, "config.yaml"),
    "config.yaml that is not a mapping": (config_not_a_mapping, {"unreadable"}, "config.yaml"),
    "data.json and summary.json that are not JSON objects": (data_and_summary_not_json, {"unreadable"}, "data.json"),
    "stats.jsonl records of the wrong shape": (stats_of_the_wrong_shape, {"unreadable"}, "'layers'"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_run_is_never_a_traceback_nor_healthy(tmp_path, case):
    write, expected, words = CASES[case]
    findings = diagnose(write(tmp_path / "run"))
    alarms = [f for f in findings if f.severity in ALARM]
    assert alarms, format_findings(findings, "info")
    said = [f for f in alarms if f.id in expected and words in f.title + " " + f.evidence]
    assert said, format_findings(findings, "info")
    assert "looks healthy" not in format_findings(findings, "warning")


def test_the_data_problem_finding_counts_and_quotes_the_first_problems(tmp_path):
    found = {f.id: f for f in diagnose(values_of_the_wrong_type(tmp_path / "run"))}
    unreadable = found["unreadable"]
    assert unreadable.severity == "warning" and unreadable.title.startswith("6 parts")
    assert "no kind" in unreadable.evidence and "and 3 more" in unreadable.evidence
    # the rest of the history still feeds every check; only its length is too short for some (info)
    assert "unchecked" not in found or (found["unchecked"].severity == "info"
                                        and "could not run: not enough" in found["unchecked"].evidence)


def test_every_check_still_reads_what_is_left_of_a_damaged_history(tmp_path):
    rising = [batch(i + 1, 2.3 * 1.03 ** i) for i in range(100)]
    run = with_history(tmp_path / "run", lines(*rising[:50], "{cut", *rising[50:]))
    assert {"lr_diverged", "unreadable"} <= {f.id for f in diagnose(run) if f.severity in ALARM}


def test_a_non_finite_loss_explains_the_missing_epoch_lines(tmp_path):
    found = {f.id: f for f in diagnose(nan_from_step_one(tmp_path / "run"))}
    assert found["nonfinite"].severity == "error" and found["nonfinite"].step == 1
    assert found["unchecked"].severity == "info" and "consequence of nonfinite" in found["unchecked"].title


def test_a_correct_history_has_no_data_problem(tmp_path):
    run = write_run(tmp_path / "run", epochs=healthy_epochs(), stats=[stat(s) for s in range(1, 401, 40)])
    (run / "summary.json").write_text(json.dumps({"test_acc": 0.9}))
    assert not [f for f in diagnose(run) if f.id in ("unreadable", "unchecked")]
    assert "looks healthy" in format_findings(diagnose(run), "warning")


def test_a_run_without_a_validation_split_says_so_only_as_information(tmp_path):
    # cnntricks train with data.val_fraction=0 writes val_acc and val_loss as null: by choice, not damage
    rows = [dict(r, val_acc=None, val_loss=None) for r in healthy_epochs()]
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", epochs=rows))}
    assert found["unchecked"].severity == "info" and "no validation split" in found["unchecked"].evidence
    assert not [f for f in found.values() if f.severity in ALARM]


@pytest.mark.parametrize("write", [zero_bytes, nan_from_step_one])
def test_the_command_fails_on_warning_without_a_traceback(tmp_path, capsys, write):
    from cnntricks.cli import main
    run = write(tmp_path / "run")
    assert main(["doctor", str(run), "--fail-on", "warning"]) == 5
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "looks healthy" not in out.out


def test_a_checkpoint_that_cannot_be_read_is_said_not_raised(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from cnntricks.doctor import stats_checks

    def damaged(run_dir):
        raise SafetensorError("Error while deserializing header: header too small")
    monkeypatch.setattr(stats_checks, "first_layer_smoothness", damaged)
    found = {f.id: f for f in diagnose(write_run(tmp_path / "run", epochs=healthy_epochs()))}
    assert found["unreadable"].severity == "warning" and "header too small" in found["unreadable"].evidence
