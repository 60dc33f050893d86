"""The run's history: plain numbers, one JSON object per line, in `history.jsonl`.

Kinds of line (the format other loops can write too; see the README):
  {"kind": "batch", "step", "epoch", "loss", "lr"}
  {"kind": "epoch", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", ...}
  {"kind": "event", "epoch", "step", "event", "message"}

Lines are buffered and written at the end of each epoch, just before that epoch's checkpoint,
and the checkpoint records how many lines the file had. A resumed run cuts the file back to
that count, so an epoch that a kill interrupted is neither lost nor written twice.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _clean(value):
    # JSON has no NaN or infinity; a diverged loss is written as null (the doctor reads a
    # "nonfinite" event for it).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Lines buffered in memory and appended (with fsync) at `flush`, which returns the file's line
    count for the checkpoint; `truncate` cuts the file back to such a count on resume. The writer
    of history.jsonl here and of stats.jsonl (monitor/)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.pending: list[str] = []
        self.lines = 0
        if self.path.exists():
            with self.path.open("rb") as f:  # bytes: a kill may have cut a character in half
                self.lines = sum(1 for _ in f)

    def flush(self) -> int:
        """Append the pending lines and fsync; returns the file's line count."""
        if self.pending:
            with self.path.open("a") as f:
                f.write("\n".join(self.pending) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.lines += len(self.pending)
            self.pending = []
        return self.lines

    def truncate(self, lines: int) -> None:
        """Keep the first `lines` lines (those a checkpoint vouches for); rewrite atomically."""
        kept = self.path.read_bytes().splitlines(keepends=True)[:lines] if self.path.exists() else []
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, self.path)
        self.lines, self.pending = len(kept), []


class HistoryWriter(JsonlWriter):
    def add(self, kind: str, **values) -> None:
        record = {"kind": kind, **{k: _clean(v) for k, v in values.items()}}
        self.pending.append(json.dumps(record))


def read_jsonl(path: Path, missing: str) -> list[dict]:
    """Every JSON object of a .jsonl file, in file order; `missing` is the error's advice.

    A cut-off last line (a run killed while writing) is skipped; a damaged line anywhere else
    is an error, since no writer of these formats leaves one.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {missing}")
    # errors="replace": a kill can also cut a multi-byte character in half
    lines = [line for line in path.read_bytes().decode("utf-8", errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({line[:60]!r}...); "
                             "only the last line of a killed run may be cut short") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def read_history(run_dir: str | Path) -> list[dict]:
    """Every record of `<run_dir>/history.jsonl`, in file order (see `read_jsonl`)."""
    return read_jsonl(Path(run_dir) / "history.jsonl",
                      f"is '{run_dir}' a run directory written by the trainer?")


def split_history(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(batch records, epoch records); other kinds (events) are left out."""
    return ([r for r in records if r.get("kind") == "batch"],
            [r for r in records if r.get("kind") == "epoch"])
