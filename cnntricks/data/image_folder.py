"""A folder of images with one sub-folder per class (torchvision's ImageFolder layout).

    root/<class>/**/*.jpg                      the test split is carved (data.test_fraction)
    root/train/<class>/...  root/test/<class>/...   used as given; `val/` serves as the test
                                               split when there is no `test/`, and joins the
                                               training pool when there is one (data.val_fraction
                                               then carves the validation split from it)

Class names are the class folders' names, sorted. Images are decoded once with Pillow to
data.channels (default 3; transparency composited on white, see `decode`) at data.image_size
(default: the images' own size, which must then be the same for all), and the result is
cached in <cache>/image-folder/ as safetensors, valid while the root, the files' relative
paths, sizes and modification times, the size and the channels stay the same.
Hidden files and folders (.DS_Store, .git) are ignored. Files that are not images, files
outside the class folders, and images Pillow cannot decode are skipped with a DataWarning
that lists them; with data.strict=true they are an error.

Links to folders. A class folder (or train/, test/, val/) that is a symbolic link to a folder
outside the data root is followed once, with a DataWarning naming it (assembling a dataset
from links is common, but a link is easy to forget). Every other link to a folder is skipped
with a DataWarning: one that points at the data root, a folder above it, or anywhere inside it
(`photos/loop -> photos/` would otherwise be a class holding every image; a folder inside the
root is read in its own place), and one that points into a folder already listed. Links inside
class folders are never followed (os.walk's default); they are listed in the same warning.
Links to image files are read like files.
Decoding at data.image_size first estimates the memory of the decoded store and refuses,
before decoding anything, when it does not fit (see `memory.check_memory`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from cnntricks.config import DataConfig
from cnntricks.data.cache import cache_root, write_atomically
from cnntricks.data.decode import DECODE_ERRORS, decode_image
from cnntricks.data.errors import DataError, DataWarning, list_items
from cnntricks.data import mapped
from cnntricks.data.memory import available_memory, check_memory, gigabytes
from cnntricks.data.sources import SOURCES, carve_test
from cnntricks.data.store import Store
from cnntricks.rundir import save_tensors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PROGRESS_MIN_FILES = 200  # fewer files decode in well under a second; no progress bar then
_CACHE_FORMAT = 1  # bump when the cache file's layout changes
AUTO_DISK_SHARE = 0.5  # data.storage=auto: disk when the decoded images would take over half the available memory
DECODE_COPIES = 8  # bytes of memory per stored byte while decoding one image (Pillow's image, float copies)
_TRAIN, _TEST = 0, 1
log = logging.getLogger(__name__)


@dataclass
class Listing:
    classes: list[str]
    files: list[tuple[str, int, int, int, int]] = field(default_factory=list)  # (relative path, label, split, bytes, mtime_ns)
    stray: list[str] = field(default_factory=list)  # "relative path: why" for files that are not usable images
    has_test: bool = False


def _hint(root: Path) -> str:
    return f"image-folder expects {root}/<class>/<image>.jpg (one sub-folder per class; .jpg .jpeg .png .bmp ...)"


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries without hidden ones (.DS_Store, .git), sorted by name."""
    try:
        with os.scandir(folder) as scan:
            return sorted((entry for entry in scan if not entry.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise DataError(f"data.root: cannot read '{folder}' ({err.strerror or err}); check that it exists "
                        f"and that you may read it") from None


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a link in a loop: reported by _Scanner, which meets it too
        return False


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


class _Scanner:
    """Lists sub-folders under the data root, deciding once per link to a folder whether to follow it."""

    def __init__(self, root: Path):
        self.root = root
        self.followed: dict[str, Path] = {}  # relative path of the link -> its target
        self.skipped: dict[str, str] = {}  # relative path of the link -> why it was not followed
        self._listed: dict[Path, list[Path]] = {}

    def subfolders(self, folder: Path) -> list[Path]:
        if folder not in self._listed:
            self._listed[folder] = self._scan(folder)
        return self._listed[folder]

    def _scan(self, folder: Path) -> list[Path]:
        entries = []
        for entry in _entries(folder):
            try:
                if entry.is_dir():  # follows links
                    entries.append(entry)
            except OSError as err:  # a link in a loop (a -> b -> a)
                relative = Path(entry.path).relative_to(self.root).as_posix()
                self.skipped[relative] = f"a link that cannot be resolved ({err.strerror or err}); not followed"
        # Folders already read: this one, its real sub-folders, and the targets of followed links.
        taken = [folder.resolve(), *(Path(entry.path).resolve() for entry in entries if not entry.is_symlink()),
                 *self.followed.values()]
        folders = []
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_symlink():
                folders.append(path)
                continue
            target, relative = path.resolve(), path.relative_to(self.root).as_posix()
            if self.root.is_relative_to(target):
                self.skipped[relative] = f"a link to '{target}', the data root or a folder above it; not followed"
            elif target.is_relative_to(self.root):
                self.skipped[relative] = (f"a link to '{target.relative_to(self.root).as_posix()}/' inside the data "
                                          f"root, which is read in its own place; not followed")
            elif any(_overlaps(target, other) for other in taken):
                self.skipped[relative] = f"a link to '{target}', a folder already read; not followed"
            else:
                self.followed[relative] = target
                taken.append(target)
                folders.append(path)
        return folders

    def report(self) -> None:
        if self.followed:
            links = [f"{relative} -> {target}" for relative, target in self.followed.items()]
            warnings.warn(DataWarning(f"data.root: followed {_count(len(links), 'link')} under '{self.root}' to "
                                      f"folders outside it (check that they are meant to be there):\n"
                                      f"{list_items(links)}"), stacklevel=4)
        if self.skipped:
            links = [f"{relative}: {why}" for relative, why in self.skipped.items()]
            warnings.warn(DataWarning(f"data.root: skipped {_count(len(links), 'link')} to folders under "
                                      f"'{self.root}' (a link may bring in a class once, from outside the data "
                                      f"root):\n{list_items(links)}"), stacklevel=4)


def _check_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise DataError("data.root: the image-folder source needs a folder; set data.root=path/to/images "
                        "(one sub-folder per class)")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(f"data.root: '{root}' does not exist; is the path right?")
    if not root.is_dir():
        raise DataError(f"data.root: '{root}' is a file, not a folder; {_hint(root)}")
    return root.resolve()


def _layout(root: Path, scanner: _Scanner) -> tuple[list[Path], Path | None]:
    """(folders of the training pool, test folder or None)."""
    named = {folder.name: folder for folder in scanner.subfolders(root)}
    train = named.get("train")
    is_split = train is not None and scanner.subfolders(train) and not any(
        _is_file(entry) and entry.name.lower().endswith(IMAGE_SUFFIXES) for entry in _entries(train))
    if not is_split:
        return [root], None
    ignored = sorted(set(named) - {"train", "test", "val"})
    if ignored:
        warnings.warn(DataWarning(f"data.root: '{root}' has train/; its other folders are ignored: {', '.join(ignored)}"),
                      stacklevel=4)
    if "test" in named:
        if "val" in named:
            log.info("image-folder: %s/val joins the training pool; test/ is the test split", root)
            return [train, named["val"]], named["test"]
        return [train], named["test"]
    return [train], named.get("val")


def _class_folder_files(folder: Path, root: Path, scanner: _Scanner
                        ) -> tuple[list[tuple[str, int, int]], list[str]]:
    """([(relative path, bytes, mtime_ns) of images], [relative paths of other files]) under `folder`."""
    images, others = [], []

    def fail(err: OSError):
        raise DataError(f"data.root: cannot read '{err.filename}' ({err.strerror or err}); check its permissions")

    for here, dirs, names in os.walk(folder, onerror=fail):  # followlinks=False: links to folders stay unread
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            if os.path.islink(os.path.join(here, name)):
                relative = Path(here, name).relative_to(root).as_posix()
                scanner.skipped[relative] = "a link to a folder inside a class folder; not followed"
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(here, name)
            relative = path.relative_to(root).as_posix()
            if not name.lower().endswith(IMAGE_SUFFIXES):
                others.append(relative)
                continue
            try:
                stat = path.stat()
            except OSError:
                stat = None  # a dangling link: left to the decoder, which reports it as unreadable
            images.append((relative, stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1))
    return images, others


def list_folder(root: Path) -> Listing:
    """Every image under `root` with its class and split; raises DataError for a wrong layout."""
    scanner = _Scanner(root)
    pool, test = _layout(root, scanner)
    # Classes come from every folder of the training pool (val/ included when it joins it).
    class_names = sorted({folder.name for base in pool for folder in scanner.subfolders(base)})
    if not class_names:
        loose = len(_entries(pool[0]))
        raise DataError(f"data.root: no class folders in '{pool[0]}' ({loose} other entries); {_hint(root)}")
    listing = Listing(class_names, has_test=test is not None)
    label_of = {name: index for index, name in enumerate(class_names)}
    bases = [(base, _TRAIN) for base in pool] + ([(test, _TEST)] if test is not None else [])
    for base, split in bases:
        folders = scanner.subfolders(base)
        if not folders:
            raise DataError(f"data.root: no class folders in '{base}'; it needs the same <class>/ "
                            f"sub-folders as train/")
        listing.stray += [f"{Path(entry.path).relative_to(root).as_posix()}: not in a class folder"
                          for entry in _entries(base) if _is_file(entry)]
        for folder in folders:
            if folder.name not in label_of:
                raise DataError(f"data.root: class '{folder.name}' is in '{base}' but not in the training "
                                f"folder(s); test and train need the same classes")
            images, others = _class_folder_files(folder, root, scanner)
            if not images:
                raise DataError(f"data.root: class folder '{folder}' has no images (looked for "
                                f"{' '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
            listing.files += [(rel, label_of[folder.name], split, size, mtime) for rel, size, mtime in images]
            listing.stray += [f"{relative}: not an image file" for relative in others]
    scanner.report()
    return listing


def _cache_file(cfg: DataConfig, root: Path, channels: int, size: tuple[int, int] | None) -> Path:
    # One file per (root, channels, size), so a changed folder overwrites its stale cache
    # instead of adding a new one; the full key inside says whether the content still matches.
    name = hashlib.sha256(json.dumps([str(root), channels, size]).encode()).hexdigest()[:16]
    return cache_root(cfg) / "image-folder" / f"{name}.safetensors"


def _cache_key(root: Path, listing: Listing, channels: int, size: tuple[int, int] | None) -> str:
    content = [_CACHE_FORMAT, str(root), channels, size, listing.classes,
               sorted((rel, split, nbytes, mtime) for rel, _, split, nbytes, mtime in listing.files)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _read_cache(path: Path, key: str):
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as cached:
            meta = cached.metadata() or {}
            if meta.get("key") != key:
                return None
            tensors = {name: cached.get_tensor(name) for name in ("images", "labels", "split")}
        return tensors, json.loads(meta["unreadable"])
    except Exception as err:  # any damage: the cache is only an optimization, decode again
        log.warning("image-folder: ignoring unreadable cache %s (%s)", path, err)
        return None


# The decoded store is held twice at the peak: the source splits it into its training and test
# parts (copies) while the whole store is still referenced.
_STORE_COPIES = 2


def _check_decode_memory(root: Path, count: int, shape: tuple[int, int, int], first: str | None) -> None:
    """DataError when `count` decoded images of `shape` (C, H, W) would not fit in memory."""
    channels, height, width = shape
    store = count * channels * height * width
    fix = ("lower data.image_size" if first is None else
           f"set data.image_size=N to resize them (the first image, '{first}', is {height}x{width})")
    check_memory(_STORE_COPIES * store,
                 f"data.root: decoding {count} images under '{root}' to {channels}x{height}x{width} "
                 f"({gigabytes(store)} of uint8, held twice while it is split)",
                 f"{fix}, or use fewer images")


def _decode_all(root: Path, listing: Listing, channels: int, size: tuple[int, int] | None):
    """Decode every listed image; returns (tensors, ["relative path: reason" per unreadable file])."""
    if size is not None:  # before decoding anything: one image at 100000x100000 is already 30 GB
        _check_decode_memory(root, len(listing.files), (channels, *size), None)
    images = None
    ok = np.zeros(len(listing.files), dtype=bool)
    unreadable, first = [], None
    progress = tqdm(listing.files, desc="decoding images", unit="img", leave=False,
                    disable=True if len(listing.files) < PROGRESS_MIN_FILES else None)
    for index, (relative, *_rest) in enumerate(progress):
        try:
            pixels = decode_image(root / relative, channels, size)
        except DECODE_ERRORS as err:  # OSError includes missing and unreadable files
            unreadable.append(f"{relative}: cannot decode it ({err})")
            continue
        if images is None:
            if size is None:  # the images' own size is known once the first one is decoded
                _check_decode_memory(root, len(listing.files), pixels.shape, relative)
            images, first = np.empty((len(listing.files), *pixels.shape), np.uint8), relative
        elif pixels.shape != images.shape[1:]:
            raise DataError(f"data.image_size: images differ in size ('{first}' is {images.shape[2]}x{images.shape[3]}, "
                            f"'{relative}' is {pixels.shape[1]}x{pixels.shape[2]}, height x width); set data.image_size=N to "
                            f"resize every image to NxN")
        images[index] = pixels
        ok[index] = True
    if images is None:
        raise DataError(f"data.root: none of the {len(listing.files)} images under '{root}' could be read:\n"
                        f"{list_items(unreadable)}")
    labels = np.array([f[1] for f in listing.files], dtype=np.int64)
    split = np.array([f[2] for f in listing.files], dtype=np.uint8)
    images = images if ok.all() else images[ok]  # compacting copies; skip it in the usual case
    tensors = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels[ok]),
               "split": torch.from_numpy(split[ok])}
    return tensors, unreadable


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _report_skipped(root: Path, listing: Listing, unreadable: list[str], strict: bool) -> None:
    skipped = unreadable + listing.stray
    if not skipped:
        return
    total = len(listing.files) + len(listing.stray)
    summary = (f"data.root: {len(skipped)} of {total} files under '{root}' are not usable "
               f"({_count(len(unreadable), 'unreadable image')}, {_count(len(listing.stray), 'other file')})")
    if strict:
        raise DataError(f"{summary}; fix or remove them, or set data.strict=false to skip them:\n{list_items(skipped)}")
    warnings.warn(DataWarning(f"{summary}; skipped them (data.strict=true makes this an error):\n{list_items(skipped)}"),
                  stacklevel=3)


def storage_for(cfg: DataConfig, root: Path, listing: Listing, channels: int,
                size: tuple[int, int] | None) -> str:
    """memory or disk: data.storage, with auto's choice (disk when the decoded images would take over
    AUTO_DISK_SHARE of the available memory, said in a DataWarning)."""
    if cfg.storage == "disk" and size is None:
        raise DataError("data.storage=disk: the images are decoded to one size on disk; set data.image_size=N "
                        "(for example data.image_size=224)")
    available = available_memory()
    needed = len(listing.files) * channels * size[0] * size[1] if size is not None else 0
    if size is not None and (cfg.storage == "disk" or (available is not None and needed > AUTO_DISK_SHARE * available)):
        # the disk must hold the file, and memory one image's decoding (a float working copy or two of it)
        cache = cache_root(cfg)
        existing = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free
        one = DECODE_COPIES * channels * size[0] * size[1]
        if needed > free or (available is not None and one > available):
            if cfg.storage == "auto":
                return "memory"  # neither fits: the memory path refuses, naming the sizes
            raise DataError(f"data.storage=disk: {len(listing.files):,} images at {channels}x{size[0]}x{size[1]} take "
                            f"{gigabytes(needed)} of disk ({gigabytes(free)} free under {existing}) and "
                            f"{gigabytes(one)} of memory to decode one; lower data.image_size or set data.cache_dir "
                            f"to a disk with room")
    if cfg.storage != "auto":
        return cfg.storage
    if size is None or available is None or needed <= AUTO_DISK_SHARE * available:
        return "memory"
    warnings.warn(DataWarning(
        f"data.storage=auto: the {len(listing.files):,} images under '{root}' at {channels}x{size[0]}x{size[1]} "
        f"take {gigabytes(needed)}, over half of the {gigabytes(available)} of memory available; they are read "
        f"from disk a batch at a time (data.storage=disk; data.storage=memory keeps them in memory)"), stacklevel=3)
    return "disk"


def disk_folder(cfg: DataConfig, root: Path, channels: int, size: tuple[int, int]) -> Path:
    """One folder per (root, channels, size), as the in-memory cache: a changed folder is built anew in its
    place (state.json's key says whether the content still matches)."""
    memory_cache = _cache_file(cfg, root, channels, size)
    return memory_cache.parent.with_name("image-folder-disk") / memory_cache.stem


def _build_disk(cfg: DataConfig, root: Path, listing: Listing, channels: int, size: tuple[int, int],
                workers: int = 0, progress: bool = True) -> tuple[Path, dict]:
    """The disk store of `listing`, built or continued: (its folder, its state.json)."""
    key = _cache_key(root, listing, channels, size)
    folder = disk_folder(cfg, root, channels, size)
    return folder, mapped.build(folder, key, root, [f[0] for f in listing.files], channels, size, workers,
                                progress and len(listing.files) >= PROGRESS_MIN_FILES)


def build_disk_store(cfg: DataConfig, workers: int = 0, progress: bool = True) -> tuple[Path, dict]:
    """`cnntricks cache`: the image folder decoded into its disk store (data.storage=disk), built or
    continued; (the folder, its state.json)."""
    root = _check_root(cfg)
    listing = list_folder(root)
    if not cfg.image_size:
        raise DataError("cnntricks cache: set data.image_size=N, the size every image is decoded to")
    return _build_disk(cfg, root, listing, cfg.channels or 3, (cfg.image_size, cfg.image_size), workers, progress)


def _load_disk(cfg: DataConfig, root: Path, listing: Listing, channels: int, size: tuple[int, int]):
    folder, state = _build_disk(cfg, root, listing, channels, size)
    unreadable = state["unreadable"]
    bad = {entry.split(": ", 1)[0] for entry in unreadable}
    ok = torch.tensor([f[0] not in bad for f in listing.files])
    if not bool(ok.any()):
        raise DataError(f"data.root: none of the {len(listing.files)} images under '{root}' could be read:\n"
                        f"{list_items(unreadable)}")
    rows = torch.nonzero(ok).flatten()
    images = mapped.MappedImages(folder / mapped.IMAGES, tuple(state["shape"])).take(rows)
    tensors = {"images": images, "labels": torch.tensor([f[1] for f in listing.files], dtype=torch.int64)[rows],
               "split": torch.tensor([f[2] for f in listing.files], dtype=torch.uint8)[rows]}
    return tensors, unreadable


@SOURCES.register("image-folder")
def load_image_folder(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train, test) from data.root; `seed` is unused (a carved test split uses TEST_SPLIT_SEED)."""
    root = _check_root(cfg)
    listing = list_folder(root)
    channels = cfg.channels or 3
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else None
    if storage_for(cfg, root, listing, channels, size) == "disk":
        tensors, unreadable = _load_disk(cfg, root, listing, channels, size)
        return _stores(cfg, root, listing, tensors, unreadable)
    key, cache_path = _cache_key(root, listing, channels, size), _cache_file(cfg, root, channels, size)
    cached = _read_cache(cache_path, key)
    if cached is not None:
        tensors, unreadable = cached
    else:
        tensors, unreadable = _decode_all(root, listing, channels, size)
        metadata = {"key": key, "classes": json.dumps(listing.classes), "unreadable": json.dumps(unreadable)}
        try:
            write_atomically(cache_path, lambda temporary: save_tensors(tensors, temporary, metadata))
        except OSError as err:
            log.warning("image-folder: cannot write the cache %s (%s); the next load decodes again", cache_path, err)
    return _stores(cfg, root, listing, tensors, unreadable)


def _stores(cfg: DataConfig, root: Path, listing: Listing, tensors: dict, unreadable: list[str]) -> tuple[Store, Store]:
    """(train, test) of the decoded images (in memory, or a view of the disk store)."""
    _report_skipped(root, listing, unreadable, cfg.strict)
    is_test = tensors["split"] == _TEST
    images = tensors["images"]
    pick = images.take if isinstance(images, mapped.MappedImages) else images.__getitem__
    train = Store(pick(~is_test), tensors["labels"][~is_test], listing.classes)
    empty = [listing.classes[c] for c, n in enumerate(train.class_counts().tolist()) if n == 0]
    if empty:
        raise DataError(f"data.root: no readable training images for class(es) {', '.join(empty)} under '{root}'; "
                        f"fix the files or remove the class folders")
    if listing.has_test:
        return train, Store(pick(is_test), tensors["labels"][is_test], listing.classes)
    return carve_test(train, cfg.test_fraction, where=f"data.root: '{root}'")
