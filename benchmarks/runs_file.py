"""A benchmark's kept runs: OUT/runs.jsonl, one JSON line per finished run, so a stopped benchmark resumes
where it stopped (a torn last line, from a kill while writing, is that run trained again)."""
from __future__ import annotations

import json
from pathlib import Path


def read_runs(path: Path, key) -> dict:
    """{key(record): record} of the runs kept in `path` (none when it does not exist)."""
    runs = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        runs[key(record)] = record
    return runs


def keep_run(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
