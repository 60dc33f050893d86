"""Memory checks before a large allocation: estimate the bytes, compare with what is free, refuse early.

A mistyped data.image_size (100000 instead of 100) asks for terabytes; without a check the
process is killed by the kernel, or swaps for an hour, with no word of why. Every place that
allocates images at a user-chosen size (resizing in `load_splits`, the image-folder decoder,
the synthetic generator) first calls `check_memory` with its estimate: the uint8 store
(N x C x S x S bytes) plus the float working copies the step needs.

Available memory is MemAvailable from /proc/meminfo (what Linux can hand out without swapping),
else os.sysconf's free pages; where neither exists the check is skipped, never guessed.
"""
from __future__ import annotations

import os

from cnntricks.data.errors import DataError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None when the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def gigabytes(count: float) -> str:
    """'12.3 GB' (decimal GB, as free(1) -h and the disk vendors count); small sizes keep 2 digits."""
    value = count / 1e9
    return f"{value:,.1f} GB" if value >= 1 else f"{value:.2g} GB"


def check_memory(needed: int, what: str, fix: str) -> None:
    """DataError when `needed` bytes exceed the available memory: '<what> needs about X GB ...; <fix>'."""
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(f"{what} needs about {gigabytes(needed)} of memory but {gigabytes(available)} is "
                        f"available; {fix}")
