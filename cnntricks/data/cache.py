"""Where decoded data is kept between runs, and how it is written without ever leaving half a file.

Decoding is the slow part of loading (gzip for Fashion-MNIST, Pillow for image folders), so the
decoded uint8 arrays are kept on disk. Every write goes to a temporary file in the same folder
and is renamed into place (`os.replace` is atomic on POSIX and Windows), so a crash or a second
process never sees a partial cache file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cnntricks.config import DataConfig
from cnntricks.rundir import write_atomic


def cache_root(cfg: DataConfig) -> Path:
    """data.cache_dir, else $XDG_CACHE_HOME/cnntricks, else ~/.cache/cnntricks."""
    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnntricks"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then rename the result to `path`; no partial file survives.
    (rundir.write_atomic: a hidden temporary name in the same folder, which an image-folder scan ignores.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
