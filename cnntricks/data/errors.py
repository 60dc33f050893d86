"""Errors and warnings of the data stage.

`DataError` is a `ValueError` whose message says what was wrong, where, and what to do
(house style rule 9), so the CLI can print it as it is. `DataWarning` carries the things that
were skipped but did not stop loading (unreadable images, stray files), so a user sees them
once and a test can catch them with `pytest.warns`; it also carries what was repaired
(labels renumbered to 0..K-1, a split made smaller than its fraction asked, a link followed).
"""
from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be loaded; the message names the file or setting and the fix."""


class DataWarning(UserWarning):
    """Data that was skipped or repaired while loading (a corrupt image, a stray file, a gap in the labels)."""


def list_items(items: list[str], limit: int = 20) -> str:
    """One indented line per item, at most `limit` of them, for multi-line messages."""
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)
