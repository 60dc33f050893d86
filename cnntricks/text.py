"""Plain-text tables for the terminal (the command line's and `session.train`'s summaries)."""
from __future__ import annotations


def table(rows: list[list], header: list[str]) -> str:
    """Columns padded to their widest cell, a dashed line under the header, trailing spaces trimmed."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def percent(value) -> str:
    """A fraction as a percentage with two decimals; '-' for None."""
    return "-" if value is None else f"{100 * value:.2f}%"
