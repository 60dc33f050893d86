"""From a DataConfig to train / validation / test stores, and from image files to a batch.

`load_splits` is the one entry point of the training stage:
  1. the source (data.source) gives its training and test splits;
  2. a stratified validation split of data.val_fraction is carved from training, seeded with
     the run's seed (it is part of the training data, so it may differ per seed);
  3. data.subset keeps N training images (stratified, seeded, from what step 2 left) and
     shrinks the validation split in the same proportion, so validation stays data.val_fraction
     of the data in use and a quick run stays quick (a subset of 1000 Fashion-MNIST images
     validates on 111, not 6000);
  4. data.channels and data.image_size bring every split to one format.
The test split is never changed by a seeded choice: it is the source's own, or carved by the
source with a fixed seed.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from cnntricks.config import DataConfig
from cnntricks.data.convert import resize_images, to_channels
from cnntricks.data.decode import DECODE_ERRORS, decode_image
from cnntricks.data.errors import DataError, DataWarning, list_items
from cnntricks.data.sources import SOURCES
from cnntricks.data.split import stratified_split
from cnntricks.data.store import Splits, Store


def _format(store: Store, cfg: DataConfig) -> Store:
    images = to_channels(store.images, cfg.channels)
    if cfg.image_size is not None:
        images = resize_images(images, (cfg.image_size, cfg.image_size))
    return store if images is store.images else Store(images, store.labels, store.classes)


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Train, validation and test stores of data.source, as the module docstring describes."""
    train, test = SOURCES.get(cfg.source)(cfg, seed)
    if test is not None and test.classes != train.classes:
        raise DataError(f"{cfg.source}: the test split's classes {test.classes} differ from the training "
                        f"split's {train.classes}")
    generator = torch.Generator().manual_seed(seed)
    keep, held = stratified_split(train.labels, cfg.val_fraction, generator)
    train, val = train.subset(keep), train.subset(held)

    if cfg.subset is not None:
        if cfg.subset > len(train):
            warnings.warn(DataWarning(f"data.subset={cfg.subset} but {cfg.source} has only {len(train)} training "
                                      f"images after the validation split; using all of them"), stacklevel=2)
        elif cfg.subset < len(train):
            val_size = round(len(val) * cfg.subset / len(train))
            _, chosen = stratified_split(train.labels, cfg.subset, generator)
            _, chosen_val = stratified_split(val.labels, val_size, generator)
            train, val = train.subset(chosen), val.subset(chosen_val)

    train, val = _format(train, cfg), _format(val, cfg)
    test = _format(test, cfg) if test is not None else None
    return Splits(train=train, val=val, test=test, source=cfg.source)


def load_images(paths: list[str | Path], channels: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, channels, H, W) of image files, decoded as the image-folder source decodes them.

    For `cnntricks predict`: `size` = (H, W) of the training images. Every file is tried; the
    DataError lists each one that could not be read, with the reason.
    """
    if channels not in (1, 3):
        raise DataError(f"load_images: channels must be 1 or 3, got {channels}")
    height, width = size
    images = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    problems = []
    for index, path in enumerate(paths):
        path = Path(path)
        if not path.is_file():
            problems.append(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
            continue
        try:
            images[index] = decode_image(path, channels, (height, width))
        except DECODE_ERRORS as err:
            problems.append(f"{path}: not an image Pillow can read ({err})")
    if problems:
        raise DataError(f"could not read {len(problems)} of {len(paths)} image files; fix or leave them out:\n"
                        f"{list_items(problems)}")
    return torch.from_numpy(images)
