"""The registry of data sources: name -> function (cfg: DataConfig, seed) -> (train, test).

Each source lives in its own file and registers itself here; `load_splits` looks the name up,
so an unknown `data.source` is an error listing the known ones. A source returns its training
split and its test split as `Store`s with the same classes; it carves a test split itself when
the data has none, with `TEST_SPLIT_SEED` rather than the run's seed (see `carve_test`).

A carved test split never takes a class's last image: the training split keeps every class
(`split.hold_out`). Data too small for data.test_fraction gets a smaller test split with a
DataWarning, or a DataError when no test image can be spared at all.
"""
from __future__ import annotations

import warnings

import torch

from cnntricks.data.errors import DataError, DataWarning
from cnntricks.data.split import hold_out
from cnntricks.data.store import Store
from cnntricks.registry import Registry

SOURCES = Registry("data source")

# The test split must be the same for every run on the same data, whatever train.seed is:
# otherwise runs with different seeds are scored on different images, and an ensemble of
# seeds would score each member on images that other members trained on.
TEST_SPLIT_SEED = 0


def class_names(store: Store, labels: list[int], limit: int = 10) -> str:
    """"'cat', 'dog'" for `labels`, at most `limit` of them, then '... and N more'."""
    names = ", ".join(repr(store.classes[label]) for label in labels[:limit])
    return names + (f" ... and {len(labels) - limit} more" if len(labels) > limit else "")


def count_images(count: int) -> str:
    """'1 image', '3 images'."""
    return f"{count} image{'' if count == 1 else 's'}"


def check_two_classes(train: Store, where: str) -> None:
    """DataError unless the training split has images of at least 2 classes."""
    present = torch.nonzero(train.class_counts()).flatten().tolist()
    if not present:
        raise DataError(f"{where}: the training split has no images; a classifier needs images of at "
                        f"least 2 classes")
    if len(present) == 1:
        raise DataError(f"{where}: all {count_images(len(train))} of the training split are of one class, "
                        f"{class_names(train, present)}; a classifier needs at least 2 classes: add images "
                        f"of another class (image-folder: one sub-folder of images per class)")


def carve_test(store: Store, test_fraction: float, where: str = "data") -> tuple[Store, Store]:
    """(train, test) from one store: a stratified test split of `test_fraction`, fixed seed,
    that leaves every class at least one training image; `where` names the data in messages."""
    check_two_classes(store, where)
    generator = torch.Generator().manual_seed(TEST_SPLIT_SEED)
    keep, held, asked, cut = hold_out(store.labels, test_fraction, generator)
    if asked == 0:
        raise DataError(f"{where}: data.test_fraction={test_fraction} of {len(store)} images rounds to no test "
                        f"image; raise data.test_fraction or add images")
    if len(held) == 0:
        classes = int((store.class_counts() > 0).sum())
        raise DataError(f"{where}: cannot carve a test split (data.test_fraction={test_fraction}) from {len(store)} "
                        f"images in {classes} classes without taking a class's only image, and training needs "
                        f"every class; add images (at least 2 per class) or provide a test split (npz: x_test "
                        f"and y_test; image-folder: test/)")
    if cut:
        warnings.warn(DataWarning(
            f"{where}: the test split has {count_images(len(held))} instead of the {asked} that "
            f"data.test_fraction={test_fraction} asks for: class(es) {class_names(store, cut)} have too few images "
            f"to give their share and keep one for training"), stacklevel=3)
    return store.subset(keep), store.subset(held)
