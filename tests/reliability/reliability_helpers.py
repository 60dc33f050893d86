"""What every reliability case asserts (README, "Reliability"): the documented exit code, a message
that names the problem, no traceback, and nothing already written lost or changed."""
from __future__ import annotations

from pathlib import Path

from e2e_helpers import SMALL

# Three epochs, a checkpoint after each: the two newest (epoch-0002, epoch-0003) are kept.
RUN = [*SMALL[:-1], "train.epochs=3", "--quiet"]


def no_traceback(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the lock file aside: it holds the pid of whoever held it last)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}
