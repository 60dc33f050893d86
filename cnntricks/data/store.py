"""The in-memory dataset: one uint8 image tensor and one label tensor per split.

airbench's design: the whole split is one contiguous uint8 tensor (N, C, H, W); it is a quarter
of the bytes of float32 and converting a batch on the device is faster than loading floats.
Batches are index tensors into it (see `loader.batch_indices`), augmentation and normalization
happen later, batched, on the training device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from cnntricks.data.mapped import MappedImages


@dataclass
class Store:
    images: torch.Tensor | MappedImages  # uint8 (N, C, H, W), contiguous; or rows of a file (data.storage=disk)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]  # class names; index = label

    def __post_init__(self):
        # Checked once here so every later stage can rely on the layout without re-checking.
        if isinstance(self.images, MappedImages):  # data.storage=disk: rows of a file, read by index batch
            if len(self.images) != len(self.labels):
                raise ValueError(f"Store has {len(self.images)} images but {len(self.labels)} labels")
            self.classes = list(self.classes)
            return
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"Store.images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(f"Store.labels must be int64 (N,), got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"Store has {len(self.images)} images but {len(self.labels)} labels")
        if not self.images.is_contiguous():
            self.images = self.images.contiguous()
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def height(self) -> int:
        return self.images.shape[2]

    @property
    def width(self) -> int:
        return self.images.shape[3]

    def subset(self, index: torch.Tensor) -> Store:
        """A new Store with the images at `index` (int64 positions or a bool mask), copied."""
        if isinstance(self.images, MappedImages):
            return Store(self.images.take(index), self.labels[index], self.classes)  # a view: nothing read
        return Store(self.images[index].contiguous(), self.labels[index], self.classes)

    @property
    def on_disk(self) -> bool:
        return isinstance(self.images, MappedImages)

    def class_counts(self) -> torch.Tensor:
        """Images per class, int64 (len(classes),)."""
        return torch.bincount(self.labels, minlength=len(self.classes))


@dataclass
class Splits:
    train: Store
    val: Store  # carved from the source's training split; empty when data.val_fraction is 0
    test: Store | None  # None only for a source that truly has none (never the built-in ones)
    source: str  # the data.source name, e.g. "fashion-mnist"

    @property
    def classes(self) -> list[str]:
        return self.train.classes
