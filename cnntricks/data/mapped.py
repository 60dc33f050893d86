"""Images larger than memory (data.storage=disk): the decoded uint8 store as one file, read by index batch.

The file holds N rows of C·H·W bytes, (N, C, H, W) in row order, as the in-memory store would hold them;
`MappedImages` stands where a Store's image tensor stands: `images[index_tensor]` and `images[a:b]` read
those rows (with os.preadv, so the process's memory holds the batch, not the file: a memory map would count
every page it touched), `take(index)` is a view (no read), `len` and `shape` are the file's. The training
loop reads the next batch in a background thread while the step runs (train/loop.py).

The file is built once, by `build` (`cnntricks cache`, or the first run that needs it): image files are
decoded in worker processes, each writing its rows in place, with a progress bar; `done.npy` (which rows
are written) is saved every few hundred images, so a build killed at any point goes on where it stood, and
state.json says the file is complete only at the end. The cache key (every file's path, size and
modification time, the size and the channels) names the folder: a changed source builds anew.
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cnntricks.data.decode import DECODE_ERRORS, decode_image
from cnntricks.data.errors import DataError
from cnntricks.rundir import write_atomic, write_json

IMAGES, DONE, STATE = "images.u8", "done.npy", "state.json"
SAVE_EVERY = 256  # rows between saves of done.npy: what a killed build decodes again at most (per worker chunk)
CHUNK = 64        # files per task of a worker process


class MappedImages:
    """uint8 (N, C, H, W) rows of `path`, or of the rows `index` picks; reads only what is asked."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], index: torch.Tensor | None = None):
        self.path, self.file_shape = Path(path), tuple(shape)
        self.index = index  # int64 rows of the file, in this view's order; None: every row in order
        self.row = int(np.prod(shape[1:]))
        self.dtype = torch.uint8

    def __len__(self) -> int:
        return self.file_shape[0] if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.file_shape[1:]))

    def dim(self) -> int:
        return 4

    def rows(self, positions: torch.Tensor) -> torch.Tensor:
        """File rows for this view's `positions` (int64)."""
        return positions if self.index is None else self.index[positions]

    def take(self, key) -> MappedImages:
        """The view of the images at `key` (int64 positions or a bool mask): nothing is read."""
        positions = self._positions(key)
        return MappedImages(self.path, self.file_shape, self.rows(positions))

    def _positions(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            return torch.arange(len(self))[key]
        key = torch.as_tensor(key)
        if key.dtype == torch.bool:
            return torch.nonzero(key).flatten()
        positions = key.long().flatten()
        positions = torch.where(positions < 0, positions + len(self), positions)  # -1 is the last, as in torch
        if positions.numel() and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"{self.path}: index out of range for {len(self)} images")
        return positions

    def __getitem__(self, key) -> torch.Tensor:
        """The images at `key` (a slice, int64 positions or a bool mask), read from the file: (k, C, H, W)."""
        rows = self.rows(self._positions(key)).numpy()
        out = np.empty((len(rows), self.row), np.uint8)
        if len(rows):
            order = np.argsort(rows, kind="stable")  # ascending offsets: the disk reads forward
            with open(self.path, "rb", buffering=0) as f:
                fd = f.fileno()
                for i in order:
                    view = memoryview(out[i])
                    got = os.preadv(fd, [view], int(rows[i]) * self.row)
                    if got != self.row:
                        raise DataError(f"{self.path}: row {rows[i]} is cut short ({got} of {self.row} bytes); "
                                        f"the cache is damaged: delete {self.path.parent} and build it again")
        return torch.from_numpy(out).view(len(rows), *self.file_shape[1:])

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Up to `count` images read into memory: all of them in order when there are no more (what
        the preprocessing and fancy PCA fit on; the same numbers as an in-memory store then)."""
        if len(self) <= count:
            return self[:]
        return self[torch.randperm(len(self), generator=generator)[:count].sort().values]

    def to(self, device) -> MappedImages:
        raise TypeError("data.storage=disk: the images stay on disk and are read a batch at a time; index them "
                        "(images[indices]) and move the batch")


def read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None


def _decode_rows(task: tuple[str, str, int, int, tuple | None, list[tuple[int, str]]]) -> tuple[list[int], list[str]]:
    """In a worker: decode each (row, relative path) of the task and write it at its row; (rows written,
    ["relative path: reason" per unreadable file])."""
    root, images, row_bytes, channels, size, items = task
    written, unreadable = [], []
    with open(images, "r+b", buffering=0) as f:
        for row, relative in items:
            try:
                pixels = decode_image(Path(root) / relative, channels, size)
            except DECODE_ERRORS as err:
                unreadable.append(f"{relative}: cannot decode it ({err})")
                written.append(row)  # done: a row of zeros, left out of the store
                continue
            data = np.ascontiguousarray(pixels).reshape(-1)
            if data.size != row_bytes:
                raise DataError(f"{relative}: decoded to {pixels.shape}, not the store's row of {row_bytes} bytes")
            os.pwrite(f.fileno(), memoryview(data), row * row_bytes)
            written.append(row)
    return written, unreadable


def build(folder: Path, key: str, root: Path, files: list[str], channels: int, size: tuple[int, int],
          workers: int = 0, progress: bool = True) -> dict:
    """Decode `files` (relative to `root`) at `size` into folder/images.u8, going on from a killed build of
    the same `key`; returns state.json's content: {"key", "shape", "unreadable", "complete"}."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (len(files), channels, *size)
    row_bytes = channels * size[0] * size[1]
    state = read_state(folder)
    done = None
    if state is not None and state.get("key") == key and tuple(state.get("shape", ())) == shape:
        if state.get("complete"):
            return state
        try:
            done = np.load(folder / DONE)
        except (OSError, ValueError):
            done = None
    if done is None or len(done) != len(files):  # a new build (or a changed source): start from nothing
        done = np.zeros(len(files), bool)
        state = {"key": key, "shape": list(shape), "unreadable": [], "complete": False}
        with open(folder / IMAGES, "wb") as f:
            f.truncate(len(files) * row_bytes)
        write_json(folder / STATE, state)
    unreadable = list(state.get("unreadable", []))
    todo = [i for i in range(len(files)) if not done[i]]
    tasks = [(str(root), str(folder / IMAGES), row_bytes, channels, tuple(size),
              [(i, files[i]) for i in todo[start:start + CHUNK]]) for start in range(0, len(todo), CHUNK)]
    workers = workers or max(1, os.cpu_count() or 1)
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="caching images", unit="img",
               disable=not progress or None)
    since = 0

    def record(result) -> None:
        nonlocal since
        written, bad = result
        done[written] = True
        unreadable.extend(bad)
        bar.update(len(written))
        since += len(written)
        if since >= SAVE_EVERY:  # the rows are on disk before the record that vouches for them
            save_progress(folder, done, state, unreadable)
            since = 0

    try:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                record(_decode_rows(task))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_decode_rows, tasks):
                    record(result)
    finally:
        save_progress(folder, done, state, unreadable)
        bar.close()
    state = {**state, "unreadable": unreadable, "complete": True}
    write_json(folder / STATE, state)
    return state


def save_progress(folder: Path, done: np.ndarray, state: dict, unreadable: list[str]) -> None:
    """The rows on disk first (fsync), then the record that vouches for them (atomic)."""
    fd = os.open(folder / IMAGES, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    buffer = io.BytesIO()
    np.save(buffer, done, allow_pickle=False)
    write_atomic(folder / DONE, buffer.getvalue())
    write_json(folder / STATE, {**state, "unreadable": unreadable})
