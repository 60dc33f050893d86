"""Fetch a file over HTTP(S) into place atomically, verifying it before it becomes visible.

The bytes go to a temporary file beside the destination; the caller's check runs on that file,
and only a file that passed is renamed to its final name. A failed or mismatching download
leaves nothing behind, so the next run starts clean instead of trusting a bad file.
"""
from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from cnntricks.data.cache import write_atomically
from cnntricks.data.errors import DataError


def sha256_of_gzip_content(path: Path) -> str:
    """SHA-256 of the decompressed bytes: mirrors gzip the same data differently (name, time, level)."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file ({err})") from None
    return digest.hexdigest()


def download(url: str, destination: Path, check: Callable[[Path], None], timeout: float = 60.0) -> Path:
    """Download `url` to `destination`; `check(temporary_path)` raises DataError to reject it."""
    def fetch(temporary: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                # disable=None: a progress bar on a terminal, silence in logs and tests.
                with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=None,
                          leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as err:
            raise DataError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise DataError(f"download of {url} failed: {reason}") from None
        check(temporary)

    write_atomically(destination, fetch)
    return destination


