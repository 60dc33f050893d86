"""Data augmentation, batched on the training device (seed §1)."""
from cnntricks.augment.geometric import flip_horizontal, random_crop
from cnntricks.augment.policy import create_policy

__all__ = ["flip_horizontal", "random_crop", "create_policy"]
