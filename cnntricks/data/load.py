"""From a DataConfig to train / validation / test stores, and from image files to a batch.

`load_splits` is the one entry point of the training stage:
  1. the source (data.source) gives its training and test splits;
  2. a stratified validation split of data.val_fraction is carved from training, seeded with
     data.split_seed, else the run's seed (it is part of the training data, so it may differ per
     seed; an ensemble's members share one split_seed, so they validate on the same images);
     With data.folds=k the validation split is fold data.fold of k stratified folds instead
     (k-fold cross-validation: k runs, fold 0 to k-1, see every training image validated once);
  3. data.subset keeps N training images (stratified, seeded, from what step 2 left) and
     shrinks the validation split in the same proportion, so validation stays data.val_fraction
     of the data in use and a quick run stays quick (a subset of 1000 Fashion-MNIST images
     validates on 111, not 6000);
  4. data.imbalance makes the training split long-tailed (max/min class ratio ρ, data.imbalance_profile;
     seeded; data/longtail.py): validation and test stay as they were;
  5. data.channels and data.image_size bring every split to one format.
The test split is never changed by a seeded choice: it is the source's own, or carved by the
source with a fixed seed.

Checks before any work, each naming the source and the fix:
  - the training split needs images of at least 2 classes, and every class of the test split
    (DataError); classes of the class list that no split has are a DataWarning;
  - the validation split never takes a class's last training image: data too small for
    data.val_fraction gets a smaller validation split with a DataWarning (an empty one: the
    run has no validation accuracy); data.subset may not drop a class (DataError);
  - data.channels and data.image_size: the memory of the converted stores is estimated and
    compared with the available memory before anything is allocated (DataError).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from cnntricks.config import DataConfig
from cnntricks.data.convert import resize_bytes, resize_images, to_channels
from cnntricks.data.decode import DECODE_ERRORS, decode_image
from cnntricks.data.errors import DataError, DataWarning, list_items
from cnntricks.data.longtail import make_long_tailed
from cnntricks.data.memory import check_memory, gigabytes
from cnntricks.data.sources import SOURCES, check_two_classes, class_names, count_images
from cnntricks.data.split import hold_out, stratified_folds, stratified_split
from cnntricks.data.store import Splits, Store


def _where(cfg: DataConfig) -> str:
    return f"data.source={cfg.source}" + (f" (data.root '{cfg.root}')" if cfg.root is not None else "")


def _check_classes(train: Store, test: Store | None, where: str) -> None:
    """Training has >= 2 classes and every test class; classes without any image are a warning."""
    check_two_classes(train, where)
    in_train = train.class_counts() > 0
    in_test = test.class_counts() > 0 if test is not None else torch.zeros_like(in_train)
    unseen = torch.nonzero(in_test & ~in_train).flatten().tolist()
    if unseen:
        raise DataError(f"{where}: the test split has class(es) {class_names(train, unseen)} that the training split "
                        f"lacks; the model could never predict them: add training images of these classes or "
                        f"remove them from the test data")
    unused = torch.nonzero(~in_test & ~in_train).flatten().tolist()
    if unused:
        warnings.warn(DataWarning(f"{where}: the class list names {len(unused)} class(es) that no split has: "
                                  f"{class_names(train, unused)}; the model still gets an output for each (remove them "
                                  f"from the class list if they should not be there)"), stacklevel=3)


def _carve_val(train: Store, cfg: DataConfig, generator: torch.Generator, where: str) -> tuple[Store, Store]:
    if cfg.folds is not None:  # k-fold cross-validation: fold data.fold validates, the others train
        if cfg.fold >= cfg.folds:
            from cnntricks.config import ConfigError
            raise ConfigError(f"data.fold={cfg.fold} is not one of the data.folds={cfg.folds} folds "
                              f"(0 to {cfg.folds - 1})")
        if cfg.folds > int(train.class_counts().min()):
            raise DataError(f"{where}: data.folds={cfg.folds} needs at least {cfg.folds} training images of every "
                            f"class (the smallest has {int(train.class_counts().min())}); use fewer folds")
        folds = stratified_folds(train.labels, cfg.folds, generator)
        held = folds[cfg.fold]
        keep = torch.cat([f for i, f in enumerate(folds) if i != cfg.fold]).sort().values
        return train.subset(keep), train.subset(held)
    keep, held, asked, cut = hold_out(train.labels, cfg.val_fraction, generator)
    if cut and len(held):
        warnings.warn(DataWarning(
            f"{where}: the validation split has {count_images(len(held))} instead of the {asked} that "
            f"data.val_fraction={cfg.val_fraction} asks for: class(es) {class_names(train, cut)} have too few "
            f"training images to give their share and keep one"), stacklevel=3)
    return train.subset(keep), train.subset(held)


def _take_subset(train: Store, val: Store, cfg: DataConfig, generator: torch.Generator,
                 where: str) -> tuple[Store, Store]:
    if cfg.subset > len(train):
        warnings.warn(DataWarning(f"data.subset={cfg.subset} but {cfg.source} has only {len(train)} training "
                                  f"images after the validation split; using all of them"), stacklevel=3)
        return train, val
    if cfg.subset == len(train):
        return train, val
    val_size = round(len(val) * cfg.subset / len(train))
    _, chosen = stratified_split(train.labels, cfg.subset, generator)
    _, chosen_val = stratified_split(val.labels, val_size, generator)
    counts = train.class_counts()
    lost = torch.nonzero((counts > 0) & (torch.bincount(train.labels[chosen], minlength=len(counts)) == 0))
    if len(lost):
        enough = min(len(train), math.ceil(len(train) / int(counts[counts > 0].min())))
        raise DataError(f"{where}: data.subset={cfg.subset} keeps no training image of class(es) "
                        f"{class_names(train, lost.flatten().tolist())}; set data.subset to at least {enough} "
                        f"(that keeps every class), or leave it unset")
    return train.subset(chosen), val.subset(chosen_val)


def _check_format_memory(stores: list[Store], cfg: DataConfig) -> None:
    """DataError, before any allocation, when data.channels / data.image_size would not fit in memory."""
    needed, working, resized, count = 0, 0, 0, 0
    for store in stores:
        shape = tuple(store.images.shape)
        if cfg.channels is not None and cfg.channels != shape[1]:
            shape = (shape[0], cfg.channels, *shape[2:])
            needed += math.prod(shape)  # to_channels makes a converted copy
        if cfg.image_size is not None:
            result, floats = resize_bytes(shape, (cfg.image_size, cfg.image_size))
            resized, working = resized + result, max(working, floats)
        count += shape[0]
    needed += resized
    if needed == 0:
        return
    channels = cfg.channels or stores[0].channels
    if resized:
        size = cfg.image_size
        check_memory(needed + working,
                     f"data.image_size={size}: resizing {count} images to {channels}x{size}x{size} "
                     f"({gigabytes(needed)} of uint8 images plus {gigabytes(working)} of float working copies)",
                     "lower data.image_size, or set data.subset=N to use fewer images")
    else:
        check_memory(needed, f"data.channels={cfg.channels}: converting {count} images",
                     "set data.subset=N to use fewer images")


def _format(store: Store, cfg: DataConfig) -> Store:
    images = to_channels(store.images, cfg.channels)
    if cfg.image_size is not None:
        images = resize_images(images, (cfg.image_size, cfg.image_size))
    return store if images is store.images else Store(images, store.labels, store.classes)


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Train, validation and test stores of data.source, as the module docstring describes."""
    seed = cfg.split_seed if cfg.split_seed is not None else seed
    train, test = SOURCES.get(cfg.source)(cfg, seed)
    where = _where(cfg)
    if test is not None and test.classes != train.classes:
        raise DataError(f"{cfg.source}: the test split's classes {test.classes} differ from the training "
                        f"split's {train.classes}")
    _check_classes(train, test, where)
    generator = torch.Generator().manual_seed(seed)
    train, val = _carve_val(train, cfg, generator, where)
    if cfg.subset is not None:
        train, val = _take_subset(train, val, cfg, generator, where)
    if cfg.imbalance is not None:
        train = make_long_tailed(train, cfg.imbalance, cfg.imbalance_profile, generator)
    if len(val) == 0 and cfg.val_fraction > 0:
        asked = f"data.val_fraction={cfg.val_fraction}" + (f" and data.subset={cfg.subset}" if cfg.subset else "")
        warnings.warn(DataWarning(f"{where}: the validation split is empty (too few images for {asked}); the run "
                                  f"will have no validation accuracy: add images, or raise data.val_fraction"),
                      stacklevel=2)

    _check_format_memory([store for store in (train, val, test) if store is not None], cfg)
    train, val = _format(train, cfg), _format(val, cfg)
    test = _format(test, cfg) if test is not None else None
    return Splits(train=train, val=val, test=test, source=cfg.source)


def image_files(inputs: list[str | Path]) -> list[Path]:
    """The image files `inputs` name, in order: a file as it is; a folder, every image file under it
    (recursively, sorted, hidden ones left out); a pattern with * ? or [ ] (`photos/*.jpg`,
    `photos/**/*.png`), its matches (sorted). A folder or pattern that holds no image is an error."""
    import glob
    from cnntricks.data.image_folder import IMAGE_SUFFIXES
    files: list[Path] = []
    for entry in map(str, inputs):
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            what = f"the folder {path}"
        elif not path.exists() and glob.has_magic(entry):
            found = sorted(Path(p) for p in glob.glob(entry, recursive=True) if Path(p).is_file())
            what = f"the pattern {entry}"
        else:
            files.append(path)
            continue
        if not found:
            raise DataError(f"{what} holds no image file ({' '.join(IMAGE_SUFFIXES)})")
        files += found
    return files


def read_images(paths: list[str | Path], channels: int, size: tuple[int, int]
                ) -> tuple[torch.Tensor, list[int], list[str]]:
    """(uint8 (K, channels, H, W) of the readable files, their indices in `paths`, a line per file that
    could not be read, with the reason): `cnntricks predict` predicts the others."""
    if channels not in (1, 3):
        raise DataError(f"load_images: channels must be 1 or 3, got {channels}")
    height, width = size
    images = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    kept, problems = [], []
    for index, path in enumerate(paths):
        path = Path(path)
        if not path.is_file():
            problems.append(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
            continue
        try:
            images[len(kept)] = decode_image(path, channels, (height, width))
        except DECODE_ERRORS as err:
            problems.append(f"{path}: not an image Pillow can read ({err})")
            continue
        kept.append(index)
    return torch.from_numpy(images[:len(kept)]), kept, problems


def load_images(paths: list[str | Path], channels: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, channels, H, W) of image files, decoded as the image-folder source decodes them.

    `size` = (H, W) of the training images. Every file is tried; the DataError lists each one that
    could not be read, with the reason.
    """
    images, _, problems = read_images(paths, channels, size)
    if problems:
        raise DataError(f"could not read {len(problems)} of {len(paths)} image files; fix or leave them out:\n"
                        f"{list_items(problems)}")
    return images
