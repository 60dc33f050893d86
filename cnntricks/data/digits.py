"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1797 8x8 gray images.

A second, different real dataset that needs no download. Pixel values are counts 0..16 of a
4x4 block of the original 32x32 bitmaps; they are scaled to 0..255 uint8. The data has no test
split, so one is carved with data.test_fraction (stratified, fixed seed, see `carve_test`).
"""
from __future__ import annotations

import numpy as np
import torch

from cnntricks.config import DataConfig
from cnntricks.data.sources import SOURCES, carve_test
from cnntricks.data.store import Store


@SOURCES.register("digits")
def load_digits(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train, test) as uint8 (N, 1, 8, 8); `seed` is unused (the test split is fixed)."""
    from sklearn.datasets import load_digits as sklearn_load_digits  # here: importing sklearn takes a second

    bunch = sklearn_load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    store = Store(torch.from_numpy(images), torch.from_numpy(bunch.target.astype(np.int64)),
                  [str(name) for name in bunch.target_names])
    return carve_test(store, cfg.test_fraction, where="data.source=digits")
