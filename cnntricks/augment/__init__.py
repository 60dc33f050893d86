"""Data augmentation, batched on the training device (seed §1).

Every operation takes a whole batch (N, C, H, W), uint8 or float, draws its per-image random
parameters from an explicit `torch.Generator`, and returns a batch of the same dtype.
Policies, their operations and the label-mixing operations are registries in policy.py.
"""
from cnntricks.augment.color import FancyPCA, color_jitter, hsv_to_rgb, rgb_to_hsv, wei_hsv
from cnntricks.augment.geometric import draw_flip, flip_horizontal, random_crop
from cnntricks.augment.mix import cutmix, cutout, mixup, random_erasing, soft_cross_entropy
from cnntricks.augment.policy import MIXINGS, OPERATIONS, POLICIES, create_mixing, create_policy
from cnntricks.augment.warp import WarpParameters, draw_warp, random_warp, warp

__all__ = ["FancyPCA", "color_jitter", "hsv_to_rgb", "rgb_to_hsv", "wei_hsv", "draw_flip", "flip_horizontal",
           "random_crop", "cutmix", "cutout", "mixup", "random_erasing", "soft_cross_entropy",
           "MIXINGS", "OPERATIONS", "POLICIES", "create_mixing", "create_policy",
           "WarpParameters", "draw_warp", "random_warp", "warp"]
