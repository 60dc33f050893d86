"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv:1708.07747): 70k 28x28 gray clothing images.

Where the files come from, in order:
  1. data.root, when set: a folder holding the four IDX files, gzip-compressed or not;
  2. Debian's `dataset-fashion-mnist` package, /usr/share/datasets/fashion-mnist;
  3. the download cache, <cache>/fashion-mnist (see `cache.cache_root`).
A data.root of the user's own is only read: when it does not exist or lacks a file, that is a
DataError naming the path (a mistyped path is never created, and nothing is downloaded into
it). Without data.root, missing files are downloaded into the cache when data.download is
true, from CNNTRICKS_FASHION_MNIST_URL or the project's S3 mirror. A download is
accepted only when the SHA-256 of its *decompressed* bytes matches `EXPECTED_SHA256` (mirrors
gzip the same bytes differently); files already on disk are trusted as they are, so data.root
may also point at another IDX set of the same layout (the original MNIST, for one).
Decoded arrays are cached as .npy beside the download cache, so a second load reads 47 MB of
uint8 instead of inflating gzip again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from cnntricks.config import DataConfig
from cnntricks.data.cache import cache_root, write_atomically
from cnntricks.data.download import download, sha256_of_gzip_content
from cnntricks.data.errors import DataError
from cnntricks.data.idx import read_idx
from cnntricks.data.sources import SOURCES
from cnntricks.data.store import Store

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
URL_ENVIRONMENT_VARIABLE = "CNNTRICKS_FASHION_MNIST_URL"
# SHA-256 of the decompressed IDX bytes, checked against the Debian package's files.
EXPECTED_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_DECODED_FORMAT = 1  # bump when the .npy cache layout changes


def search_folders(cfg: DataConfig) -> list[Path]:
    """Folders looked in, in order; without data.root, the last one is where downloads go."""
    if cfg.root is not None:
        return [Path(cfg.root).expanduser()]
    return [DEFAULT_ROOT, cache_root(cfg) / "fashion-mnist"]


def _find(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def _check_download(name: str, url: str):
    def check(path: Path) -> None:
        actual = sha256_of_gzip_content(path)
        expected = EXPECTED_SHA256[name]
        if actual != expected:
            raise DataError(f"{url}: SHA-256 of the decompressed file is {actual}, expected {expected}; "
                            f"the download was deleted (the mirror serves other data; try another "
                            f"{URL_ENVIRONMENT_VARIABLE})")
    return check


def _missing_names(missing: list[str]) -> str:
    return ", ".join(f"{name}(.gz)" for name in missing)


def _check_user_root(root: Path, missing: list[str]) -> None:
    """DataError naming data.root when it is not a folder holding the four files; never creates it."""
    leave_unset = (f"or leave data.root unset to use the Debian package (apt-get install dataset-fashion-mnist, "
                   f"{DEFAULT_ROOT}) or a download into the cache; nothing is downloaded into a data.root of your own")
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.root: '{root}' {what}; is the path right? Point it at a folder holding the four "
                        f"Fashion-MNIST IDX files, {leave_unset}")
    if missing:
        raise DataError(f"data.root: '{root}' lacks {_missing_names(missing)}; put the four IDX files there "
                        f"(gzip-compressed or not), {leave_unset}")


def locate_files(cfg: DataConfig) -> dict[str, Path]:
    """Path of each of the four IDX files, downloading the missing ones into the cache when allowed."""
    folders = search_folders(cfg)
    found = {name: _find(name, folders) for name in EXPECTED_SHA256}
    missing = [name for name, path in found.items() if path is None]
    if cfg.root is not None:
        _check_user_root(folders[0], missing)
    if not missing:
        return found
    reason, hint = "data.download is false", "or set data.download=true with network access"
    if cfg.download:
        base = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
        base = base if base.endswith("/") else base + "/"
        hint = f"or check the network access (or set {URL_ENVIRONMENT_VARIABLE} to a mirror)"
        try:
            for name in list(missing):
                url = f"{base}{name}.gz"
                found[name] = download(url, folders[-1] / f"{name}.gz", _check_download(name, url))
                missing.remove(name)
            return found
        except DataError as err:
            reason = f"the download failed: {err}"
        except OSError as err:  # the download folder cannot be created or written
            reason = f"the download failed: cannot write to {folders[-1]} ({err.strerror or err})"
            hint = "or set data.cache_dir to a folder you may write"
    raise DataError(
        f"fashion-mnist: missing {_missing_names(missing)}; looked in "
        f"{', '.join(str(folder) for folder in folders)} ({reason}).\n"
        f"Install the files with `apt-get install dataset-fashion-mnist`, or set data.root=... to a "
        f"folder that holds them, {hint}.")


def _decoded(path: Path, cfg: DataConfig) -> np.ndarray:
    """read_idx(path), through a .npy cache keyed by the file's absolute path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{_DECODED_FORMAT}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    cached = cache_root(cfg) / "fashion-mnist" / "decoded" / f"{path.name.split('.')[0]}-{key.hexdigest()[:16]}.npy"
    if cached.is_file():
        try:
            return np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            pass  # damaged cache file: decode again and overwrite it
    values = read_idx(path)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as out:  # a file object: np.save(path) would append ".npy"
            np.save(out, values)
    try:
        write_atomically(cached, write)
    except OSError:
        pass  # a read-only cache only costs the decode next time
    return values


def _store(images_path: Path, labels_path: Path, cfg: DataConfig) -> Store:
    images, labels = _decoded(images_path, cfg), _decoded(labels_path, cfg)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: {labels.shape} labels for {len(images)} images in {images_path}; "
                        f"the two files do not belong together")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{labels_path}: labels range over {labels.min()}..{labels.max()}, expected 0..{len(CLASSES) - 1}")
    return Store(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), CLASSES)


@SOURCES.register("fashion-mnist")
def load_fashion_mnist(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train 60000, test 10000), uint8 (N, 1, 28, 28); `seed` is unused (the splits are fixed)."""
    files = locate_files(cfg)
    train = _store(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"], cfg)
    test = _store(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"], cfg)
    return train, test
