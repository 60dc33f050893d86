"""The registry of data sources: name -> function (cfg: DataConfig, seed) -> (train, test).

Each source lives in its own file and registers itself here; `load_splits` looks the name up,
so an unknown `data.source` is an error listing the known ones. A source returns its training
split and its test split as `Store`s with the same classes; it carves a test split itself when
the data has none, with `TEST_SPLIT_SEED` rather than the run's seed (see `carve_test`).
"""
from __future__ import annotations

import torch

from cnntricks.data.split import stratified_split
from cnntricks.data.store import Store
from cnntricks.registry import Registry

SOURCES = Registry("data source")

# The test split must be the same for every run on the same data, whatever train.seed is:
# otherwise runs with different seeds are scored on different images, and an ensemble of
# seeds would score each member on images that other members trained on.
TEST_SPLIT_SEED = 0


def carve_test(store: Store, test_fraction: float) -> tuple[Store, Store]:
    """(train, test) from one store: a stratified test split of `test_fraction`, fixed seed."""
    generator = torch.Generator().manual_seed(TEST_SPLIT_SEED)
    keep, held = stratified_split(store.labels, test_fraction, generator)
    return store.subset(keep), store.subset(held)
