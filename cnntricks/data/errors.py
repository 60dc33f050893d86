"""Errors and warnings of the data stage.

`DataError` is a `ValueError` whose message says what was wrong, where, and what to do
(house style rule 9), so the CLI can print it as it is. `DataWarning` carries the things that
were skipped but did not stop loading (unreadable images, stray files), so a user sees them
once and a test can catch them with `pytest.warns`.
"""
from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be loaded; the message names the file or setting and the fix."""


class DataWarning(UserWarning):
    """Data that was skipped while loading (a corrupt image, a stray file)."""


def list_items(items: list[str], limit: int = 20) -> str:
    """One indented line per item, at most `limit` of them, for multi-line messages."""
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)
