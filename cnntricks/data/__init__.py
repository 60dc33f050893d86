"""Data: sources -> uint8 stores -> seeded, stratified splits -> index batches.

    from cnntricks.data import load_splits, batch_indices
    splits = load_splits(cfg.data, seed=cfg.train.seed)           # Splits(train, val, test, source)
    for idx in batch_indices(len(splits.train), 512, generator):  # airbench-style loader
        images, labels = splits.train.images[idx], splits.train.labels[idx]

Sources register in SOURCES by name (fashion-mnist, image-folder, npz, digits, letters, synthetic);
importing this package registers them all.
"""
from cnntricks.data import digits, fashion_mnist, image_folder, letters, npz, synthetic  # noqa: F401  (register the sources)
from cnntricks.data.errors import DataError, DataWarning
from cnntricks.data.load import load_images, load_splits
from cnntricks.data.loader import batch_indices
from cnntricks.data.sources import SOURCES
from cnntricks.data.split import stratified_split
from cnntricks.data.store import Splits, Store

__all__ = ["DataError", "DataWarning", "SOURCES", "Splits", "Store", "batch_indices", "load_images",
           "load_splits", "stratified_split"]
