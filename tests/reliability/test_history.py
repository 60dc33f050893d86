"""history.jsonl and stats.jsonl in any state a crash, a full disk or a user can leave them: a
resume cuts them back to what the checkpoint vouches for, drops a cut-off line instead of appending
onto it, and says plainly what is lost; every later resume works too."""
from __future__ import annotations

import json

import pytest
from reliability_helpers import no_traceback

from cnntricks.rundir import HistoryWriter


def vouched(run) -> int:
    return json.loads((run / "checkpoints" / "epoch-0003" / "state.json").read_text())["history_lines"]


def lines_of(run, name="history.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]  # strict: no damaged line


DAMAGE = {
    "partial-last-line": lambda text, n: "\n".join(text.splitlines()[:n - 2]) + "\n" + text.splitlines()[n - 2][:17],
    "shorter": lambda text, n: "\n".join(text.splitlines()[:n // 2]) + "\n",
    "deleted": None,
    "longer-with-partial": lambda text, n: text + '{"kind": "batch", "st',
    "empty": lambda text, n: "",
}


@pytest.mark.parametrize("how", ["deleted", *[pytest.param(how, marks=pytest.mark.slow)
                                               for how in ("partial-last-line", "shorter", "longer-with-partial", "empty")]])
def test_resume_repairs_the_history_and_says_what_is_lost(user, run_copy, how):
    history = run_copy / "history.jsonl"
    n = vouched(run_copy)
    if DAMAGE[how] is None:
        history.unlink()
    else:
        history.write_text(DAMAGE[how](history.read_text(), n))
    for epochs in (4, 5):  # and a second resume after it
        result = user.run("train", "--resume", run_copy, f"train.epochs={epochs}", "--quiet")
        assert result.code == 0, result
        no_traceback(result)
        records = lines_of(run_copy)  # every line valid JSON: nothing appended onto a cut-off line
        assert [r["epoch"] for r in records if r["kind"] == "epoch"][-1] == epochs
    lost = [r for r in records if r.get("event") == "history_lost"]
    if how == "longer-with-partial":
        assert not lost  # the extra lines were never vouched for: cut back, nothing lost
    else:
        assert len(lost) == 1 and "missing" in lost[0]["message"]


def test_a_stats_file_cut_short_is_repaired_too(user, run_copy):
    stats = run_copy / "stats.jsonl"
    stats.write_text(stats.read_text()[:-40])
    result = user.run("train", "--resume", run_copy, "train.epochs=4", "--quiet")
    assert result.code == 0, result
    assert "stats.jsonl" in result.err and "lost" in result.err
    lines_of(run_copy, "stats.jsonl")


def test_a_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    writer = HistoryWriter(tmp_path / "history.jsonl")
    writer.add("batch", step=1, loss=1.0)
    writer.flush()
    writer.add("batch", step=2, loss=0.5)
    import os

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        writer.flush()
    assert (tmp_path / "history.jsonl").read_text() == '{"kind": "batch", "step": 1, "loss": 1.0}\n'
