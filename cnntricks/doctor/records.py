"""What the doctor accepts of a run's files: each record checked once against its documented format
(history.jsonl: cnntricks/rundir.py; stats.jsonl: cnntricks/monitor/monitor.py), so that every
check sees well-typed numbers only, and what was left out is said (the `unreadable` finding).

Left out, each described in `problems` (count and examples go into the finding):
  - a line that is not a JSON object (`rundir.read_jsonl` skips it and reports it);
  - a record whose kind is not batch, epoch or event, or that lacks the number naming it (a batch's
    or a statistics record's integer `step`, an epoch line's integer `epoch`);
  - a value of the wrong type where a number belongs (`"loss": "abc"`, `"val_acc": [1]`, an
    accuracy outside [0, 1], a NaN learning rate): removed from its record, the rest kept;
  - repeated or backward steps (another loop resumed without cutting its history back): the last
    line of each step is kept, in step order;
  - a config.yaml, data.json or summary.json that cannot be read: the run is diagnosed without it.
A loss keeps null (the trainer's non-finite loss), and another tool's NaN or infinity becomes null
too: `Evidence.nonfinite` reads them. Statistics keep null (not measured, or non-finite: the
monitor's format), and so become NaN and infinity written there.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from cnntricks import config as config_module
from cnntricks.rundir import CONFIG, RunDirectoryError, read_json

INVALID = object()  # what a conversion returns for a value of the wrong type


def _finite(value) -> float | None:
    """A JSON number as a finite float, None when it is NaN, infinite or too big for a float."""
    try:
        value = float(value)
    except OverflowError:  # an integer of 400 digits
        return None
    return value if math.isfinite(value) else None


def _is_number(value) -> bool:
    return type(value) in (int, float)  # not bool, which JSON's true would give


def integer(value):
    if type(value) is int:
        return value
    return int(value) if type(value) is float and value.is_integer() else INVALID


def loss(value):  # null, NaN and infinity: a non-finite loss, null
    return None if value is None else _finite(value) if _is_number(value) else INVALID


def number(value):  # null: not measured
    if value is None:
        return None
    finite = _finite(value) if _is_number(value) else None
    return INVALID if finite is None else finite


def fraction(value):
    value = number(value)
    return value if value is None or value is INVALID or 0 <= value <= 1 else INVALID


def measured(value):  # the monitor's numbers: null when not measured or not finite
    return None if value is None else _finite(value) if _is_number(value) else INVALID


def text(value):
    return value if isinstance(value, str) else INVALID


Kind = tuple[Callable, str]  # (conversion, what the value must be)
INTEGER: Kind = (integer, "an integer")
LOSS: Kind = (loss, "a number or null")
NUMBER: Kind = (number, "a finite number or null")
FRACTION: Kind = (fraction, "a fraction in [0, 1] or null")
MEASURED: Kind = (measured, "a number or null")
TEXT: Kind = (text, "text")

# history.jsonl (rundir.py): the fields the checks read, per kind (others pass unchecked)
HISTORY_FIELDS: dict[str, dict[str, Kind]] = {
    "batch": {"step": INTEGER, "epoch": INTEGER, "loss": LOSS, "lr": NUMBER},
    "epoch": {"epoch": INTEGER, "train_loss": LOSS, "train_acc": FRACTION, "val_loss": LOSS, "val_acc": FRACTION,
              "lr": NUMBER},
    "event": {"event": TEXT, "step": INTEGER, "epoch": INTEGER},
}
NAMED_BY = {"batch": "step", "epoch": "epoch"}  # a record without this is left out
# stats.jsonl (monitor/monitor.py): the record's fields, then those of its parts
STATS_FIELDS: dict[str, Kind] = {"step": INTEGER, "epoch": INTEGER, "grad_norm_total": MEASURED}
STATS_PARTS: dict[str, tuple[bool, dict[str, Kind]]] = {  # part -> (a mapping of named entries?, their fields)
    "input": (False, {name: MEASURED for name in ("mean", "std", "min", "max")}),
    "layers": (True, {"type": TEXT, **{name: MEASURED for name in ("mean", "std", "min", "max", "dead", "saturated",
                                                                    "units")}}),
    "params": (True, {name: MEASURED for name in ("grad_norm", "weight_norm", "update_ratio", "unit_spread")}),
}


def shorten(line: str, length: int) -> str:
    return line if len(line) <= length else line[:length - 3] + "..."


def excerpt(value, length: int = 70) -> str:
    """A record or value as JSON-like text, cut to `length` characters."""
    return shorten(json.dumps(value) if isinstance(value, (dict, list)) else repr(value), length)


def clean_fields(record: dict, fields: dict[str, Kind], where: str, problems: list[str],
                 named_by: str | None = None) -> dict | None:
    """`record` with each listed field converted; a wrong one removed (None when it is `named_by`)."""
    out = record
    for key, (convert, what) in fields.items():
        if key not in record:
            if key == named_by:
                problems.append(f"{where}: no '{key}' in {excerpt(record)} (left out)")
                return None
            continue
        value = convert(record[key])
        if value is INVALID:
            left_out = "left out" if key == named_by else "value left out"
            problems.append(f"{where}: '{key}' is {excerpt(record[key], 30)}, not {what}, in {excerpt(record)} "
                            f"({left_out})")
            if key == named_by:
                return None
            out = {k: v for k, v in out.items() if k != key}
        elif value is not record[key]:
            out = dict(out) if out is record else out
            out[key] = value
    return out


def in_order(records: list[dict], key: str, where: str, problems: list[str]) -> list[dict]:
    """`records` in `key` order, the last of each `key` kept; a repeat or a step back is reported."""
    seen, back = None, []
    for record in records:
        if seen is not None and record[key] <= seen:
            back.append((record[key], seen))
        seen = record[key] if seen is None else max(seen, record[key])
    if not back:
        return records
    problems.append(f"{where}: {len(back)} lines repeat or go back to an earlier {key} (first: {key} {back[0][0]} "
                    f"after {back[0][1]}; a resumed run appended twice?): kept the last line of each {key}, "
                    f"in {key} order")
    return sorted({record[key]: record for record in records}.values(), key=lambda r: r[key])


def clean_history(records: list[dict], problems: list[str]) -> tuple[list[dict], list[dict], list[dict]]:
    """(batches, epochs, events) of history.jsonl's records, well-typed; see the module docstring."""
    kept: dict[str, list[dict]] = {kind: [] for kind in HISTORY_FIELDS}
    for record in records:
        kind = record.get("kind")
        if not isinstance(kind, str) or kind not in HISTORY_FIELDS:
            problems.append(f"history.jsonl: {'no kind' if 'kind' not in record else 'kind ' + excerpt(kind, 30)} "
                            f"(batch, epoch or event) in {excerpt(record)} (left out)")
            continue
        cleaned = clean_fields(record, HISTORY_FIELDS[kind], f"history.jsonl, {kind} line", problems, NAMED_BY.get(kind))
        if cleaned is not None:
            kept[kind].append(cleaned)
    return (in_order(kept["batch"], "step", "history.jsonl, batch lines", problems),
            in_order(kept["epoch"], "epoch", "history.jsonl, epoch lines", problems), kept["event"])


def clean_stats(records: list[dict], problems: list[str]) -> list[dict]:
    """stats.jsonl's records, well-typed: a part (input, layers, params) or an entry that is not a JSON
    object is left out of its record, a record without an integer step altogether."""
    kept = []
    for record in records:
        where = f"stats.jsonl, step {excerpt(record.get('step'), 12)}"
        record = clean_fields(record, STATS_FIELDS, where, problems, named_by="step")
        if record is None:
            continue
        for part, (named, fields) in STATS_PARTS.items():
            if part not in record:
                continue
            value = record[part]
            if not isinstance(value, dict):
                problems.append(f"{where}: '{part}' is {excerpt(value, 40)}, not a JSON object (left out)")
                record = {k: v for k, v in record.items() if k != part}
                continue
            if not named:
                record = {**record, part: clean_fields(value, fields, f"{where}, {part}", problems)}
                continue
            entries = {}
            for name, entry in value.items():
                if isinstance(entry, dict):
                    entries[name] = clean_fields(entry, fields, f"{where}, {part} {name!r}", problems)
                else:
                    problems.append(f"{where}, {part} {name!r}: {excerpt(entry, 40)}, not a JSON object (left out)")
            record = {**record, part: entries}
        kept.append(record)
    return kept


def read_config(run_dir: Path, problems: list[str]) -> config_module.Config | None:
    """config.yaml as a Config; None without one, or when it cannot be used (said in `problems`)."""
    path = run_dir / CONFIG
    if not path.is_file():
        return None
    try:
        return config_module.load(path)
    except (ValueError, OSError, RecursionError) as err:  # ConfigError is a ValueError
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        problems.append(f"{CONFIG}: cannot be used ({shorten(first_line, 160)}); "
                        "diagnosed as a run without a config")
        return None


def read_object(path: Path, problems: list[str]) -> dict | None:
    """A JSON file holding an object; None without the file, or when it holds something else (said)."""
    try:
        value = read_json(path)
    except (ValueError, OSError, RecursionError, RunDirectoryError) as err:
        problems.append(f"{path.name}: cannot be read ({shorten(str(err), 160)}); diagnosed without it")
        return None
    if value is not None and not isinstance(value, dict):
        problems.append(f"{path.name}: a JSON {type(value).__name__}, not an object; diagnosed without it")
        return None
    return value
