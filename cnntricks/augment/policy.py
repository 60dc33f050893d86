"""Augmentation policies (seed §1): named presets of the batched operations, every value overridable.

The seed: "you could try combinations of multiple different processing, e.g., doing the
rotation and random scaling at the same time", and its slides' "random mix/combinations of:
translation, rotation, stretching, shearing, lens distortions" — each operation here has its
own probability and range; the `seed` preset uses the seed's ranges where it gives them (the
HSV recipe, fancy PCA's 0.1) and moderate ones where it does not.

Order per batch: flip, crop, ONE composed warp (all geometric operations, one resampling),
colour (Wei's HSV, jitter, fancy PCA), erasing. Mixup and cutmix change the labels too, so
the training loop applies them (`create_mixing`) after normalization.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from cnntricks.augment.color import FancyPCA, color_jitter, wei_hsv
from cnntricks.augment.geometric import draw_flip, flip_horizontal, random_crop
from cnntricks.augment.mix import cutmix, mixup, random_erasing
from cnntricks.augment.warp import random_warp
from cnntricks.config import AugmentConfig

Policy = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

OFF = {"p_flip": 0.0, "crop_padding": 0, "translate": 0.0, "p_translate": 0.0, "rotate": 0.0,
       "p_rotate": 0.0, "scale": 0.0, "p_scale": 0.0, "stretch": 0.0, "p_stretch": 0.0,
       "shear": 0.0, "p_shear": 0.0, "lens": 0.0, "p_lens": 0.0, "p_hsv": 0.0, "p_jitter": 0.0,
       "jitter": 0.0, "fancy_pca": 0.0, "p_erase": 0.0, "mixup": 0.0, "cutmix": 0.0}
SEED = {**OFF, "p_flip": 0.5, "translate": 0.1, "p_translate": 0.5, "rotate": 15.0, "p_rotate": 0.5,
        "scale": 0.1, "p_scale": 0.5, "stretch": 0.1, "p_stretch": 0.3, "shear": 10.0,
        "p_shear": 0.3, "lens": 0.05, "p_lens": 0.3, "p_hsv": 0.5, "fancy_pca": 0.1}
PRESETS: dict[str, dict] = {
    "none": OFF,
    "flip": {**OFF, "p_flip": 0.5},
    "standard": {**OFF, "p_flip": 0.5, "crop_padding": 2},
    "seed": SEED,
    "heavy": {**SEED, "translate": 0.15, "p_translate": 0.8, "rotate": 25.0, "p_rotate": 0.8,
              "scale": 0.2, "p_scale": 0.8, "p_stretch": 0.5, "p_shear": 0.5, "p_lens": 0.5,
              "p_hsv": 0.8, "p_jitter": 0.5, "jitter": 0.4, "p_erase": 0.5, "cutmix": 1.0},
}
COLOR_KEYS = ("p_hsv", "p_jitter", "fancy_pca")


def resolve(cfg: AugmentConfig, channels: int) -> tuple[dict, str | None]:
    """(concrete values of every operation, a notice or None) for `cfg` on `channels`-channel data.

    A colour operation asked for by name on gray data is an error; one that only comes with the
    preset is dropped, and the notice says so (refused or announced, never silently skipped).
    """
    values = dict(PRESETS[cfg.policy])
    given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
             if f.name in values and getattr(cfg, f.name) is not None}
    values.update(given)
    notice = None
    if channels != 3:
        asked = [key for key in COLOR_KEYS if given.get(key)]
        if asked:
            raise ValueError(f"augment.{asked[0]}: colour operations need RGB images (3 channels), the "
                             f"data has {channels}; set it to 0, or use data.channels=3 for RGB data")
        dropped = [key for key in COLOR_KEYS if values[key]]
        if dropped:
            notice = (f"augment.policy={cfg.policy}: {', '.join(dropped)} need RGB images and the data "
                      f"has {channels} channel(s), so only the geometric operations apply")
        values.update({key: 0.0 for key in COLOR_KEYS})
    return values, notice


def create_policy(cfg: AugmentConfig, channels: int = 3, fancy_pca: FancyPCA | None = None) -> Policy:
    """A function (uint8 images, generator) -> augmented images for `cfg` (label-preserving part)."""
    v, _ = resolve(cfg, channels)
    if v["fancy_pca"] and fancy_pca is None:
        raise ValueError("augment.fancy_pca needs the training set's RGB eigenvectors: pass "
                         "fancy_pca=FancyPCA.fit(train_images)")
    warp_options = {key: v[key] for key in ("translate", "rotate", "stretch", "shear", "lens",
                                            "p_translate", "p_rotate", "p_scale", "p_stretch",
                                            "p_shear", "p_lens")}
    warp_options["scale"] = (1 - v["scale"], 1 + v["scale"])
    warps = any(v[key] and v[f"p_{key}"] for key in ("translate", "rotate", "scale", "stretch", "shear", "lens"))

    def policy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if warps and not v["crop_padding"]:  # the flip folded into the warp's grid: free
            flip = draw_flip(len(images), generator, v["p_flip"]) if v["p_flip"] else None
            images = random_warp(images, generator, fill=cfg.fill, flip=flip, **warp_options)
        else:
            if v["p_flip"]:
                images = flip_horizontal(images, generator, p=v["p_flip"])
            if v["crop_padding"]:
                images = random_crop(images, v["crop_padding"], generator)
            if warps:
                images = random_warp(images, generator, fill=cfg.fill, **warp_options)
        if v["p_hsv"]:
            images = wei_hsv(images, generator, p=v["p_hsv"])
        if v["p_jitter"] and v["jitter"]:
            j = v["jitter"]
            images = color_jitter(images, generator, brightness=j, contrast=j, saturation=j,
                                  hue=min(j / 4, 0.5), p=v["p_jitter"])
        if v["fancy_pca"]:
            images = fancy_pca(images, generator, std=v["fancy_pca"])
        if v["p_erase"]:
            images = random_erasing(images, generator, p=v["p_erase"])
        return images
    return policy


def create_mixing(cfg: AugmentConfig, channels: int, num_classes: int):
    """None, or a function (float images, labels, generator) -> (images, soft targets) for
    mixup and/or cutmix (when both are on, each batch picks one with equal chance)."""
    v, _ = resolve(cfg, channels)
    mixers = []
    if v["mixup"]:
        mixers.append(lambda x, y, g: mixup(x, y, num_classes, g, alpha=v["mixup"]))
    if v["cutmix"]:
        mixers.append(lambda x, y, g: cutmix(x, y, num_classes, g, alpha=v["cutmix"]))
    if not mixers:
        return None

    def mix(images, labels, generator):
        choice = int(torch.randint(len(mixers), (1,), generator=generator, device=generator.device))
        return mixers[choice](images, labels, generator)
    return mix
