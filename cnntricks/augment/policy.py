"""Augmentation policies (seed §1): named presets of the batched operations, every value overridable.

The seed: "you could try combinations of multiple different processing, e.g., doing the
rotation and random scaling at the same time", and its slides' "random mix/combinations of:
translation, rotation, stretching, shearing, lens distortions" — each operation here has its
own probability and range; the `seed` preset uses the seed's ranges where it gives them (the
HSV recipe, fancy PCA's 0.1) and moderate ones where it does not.

Order per batch (`OPERATION_ORDER`): flip, crop, ONE composed warp (all geometric operations,
one resampling), colour (Wei's HSV, jitter, fancy PCA), erasing. Each operation is a factory
`(values, fill, fancy_pca) -> function (images, generator) -> images`, or None when its values
turn it off. Mixup and cutmix change the labels too, so the training loop applies them
(`create_mixing`) after normalization.

Registry: `POLICIES` (augment.policy) - none, flip, standard, seed, heavy: `() -> a copy of PRESETS[name]`.
Registry: `OPERATIONS` - flip, crop, warp, hsv, jitter, fancy_pca, erase, applied in OPERATION_ORDER.
Registry: `MIXINGS` - mixup, cutmix: `(values, num_classes) -> mixer or None`, in MIXING_ORDER.
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
from cnntricks.registry import Registry

Policy = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Operation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # one step of a policy
Mixer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

POLICIES = Registry("augmentation policy")
OPERATIONS = Registry("augmentation operation")
MIXINGS = Registry("label-mixing operation")
# The order a policy applies its operations, and the order of the mixers `create_mixing` picks
# from; the generator's draws follow it, so reordering changes every augmented batch.
OPERATION_ORDER = ("flip", "crop", "warp", "hsv", "jitter", "fancy_pca", "erase")
MIXING_ORDER = ("mixup", "cutmix")

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
WARP_KEYS = ("translate", "rotate", "scale", "stretch", "shear", "lens")


def preset(values: dict) -> Callable[[], dict]:
    """A policy factory: a fresh copy of `values`, so a caller's edits never reach the preset."""
    return lambda: dict(values)


for _name, _values in PRESETS.items():
    POLICIES.register(_name)(preset(_values))


def resolve(cfg: AugmentConfig, channels: int) -> tuple[dict, str | None]:
    """(concrete values of every operation, a notice or None) for `cfg` on `channels`-channel data.

    A colour operation asked for by name on gray data is an error; one that only comes with the
    preset is dropped, and the notice says so (refused or announced, never silently skipped).
    """
    values = POLICIES.create(cfg.policy)
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


def create_policy(cfg: AugmentConfig, channels: int = 3, fancy_pca: FancyPCA | None = None, *,
                  values: dict | None = None) -> Policy:
    """A function (uint8 images, generator) -> augmented images for `cfg` (label-preserving part);
    `values`: `resolve`'s, when the caller resolved them already (the trainer does, once)."""
    values = values if values is not None else resolve(cfg, channels)[0]
    built = (OPERATIONS.create(name, values, fill=cfg.fill, fancy_pca=fancy_pca) for name in OPERATION_ORDER)
    operations = [operation for operation in built if operation is not None]

    def policy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for operation in operations:
            images = operation(images, generator)
        return images
    return policy


def warps(values: dict) -> bool:
    return any(values[key] and values[f"p_{key}"] for key in WARP_KEYS)


def folds_flip(values: dict) -> bool:
    """The flip goes into the warp's sampling grid (free) when a warp follows it directly, no crop between."""
    return warps(values) and not values["crop_padding"]


@OPERATIONS.register("flip")
def flip_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    if not values["p_flip"] or folds_flip(values):
        return None
    return lambda images, generator: flip_horizontal(images, generator, p=values["p_flip"])


@OPERATIONS.register("crop")
def crop_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    if not values["crop_padding"]:
        return None
    return lambda images, generator: random_crop(images, values["crop_padding"], generator)


@OPERATIONS.register("warp")
def warp_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    """Every geometric operation in ONE resampling; the flip folded in when `folds_flip`."""
    if not warps(values):
        return None
    options = {key: values[key] for key in ("translate", "rotate", "stretch", "shear", "lens", "p_translate",
                                            "p_rotate", "p_scale", "p_stretch", "p_shear", "p_lens")}
    options["scale"] = (1 - values["scale"], 1 + values["scale"])
    p_flip = values["p_flip"] if folds_flip(values) else 0.0

    def warp_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = draw_flip(len(images), generator, p_flip) if p_flip else None  # drawn before the warp
        return random_warp(images, generator, fill=fill, flip=flip, **options)
    return warp_images


@OPERATIONS.register("hsv")
def hsv_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    if not values["p_hsv"]:
        return None
    return lambda images, generator: wei_hsv(images, generator, p=values["p_hsv"])


@OPERATIONS.register("jitter")
def jitter_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    j = values["jitter"]
    if not (values["p_jitter"] and j):
        return None
    return lambda images, generator: color_jitter(images, generator, brightness=j, contrast=j, saturation=j,
                                                  hue=min(j / 4, 0.5), p=values["p_jitter"])


@OPERATIONS.register("fancy_pca")
def fancy_pca_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    if not values["fancy_pca"]:
        return None
    if fancy_pca is None:
        raise ValueError("augment.fancy_pca needs the training set's RGB eigenvectors: pass "
                         "fancy_pca=FancyPCA.fit(train_images)")
    return lambda images, generator: fancy_pca(images, generator, std=values["fancy_pca"])


@OPERATIONS.register("erase")
def erase_operation(values: dict, fill: str = "zeros", fancy_pca: FancyPCA | None = None) -> Operation | None:
    if not values["p_erase"]:
        return None
    return lambda images, generator: random_erasing(images, generator, p=values["p_erase"])


@MIXINGS.register("mixup")
def mixup_operation(values: dict, num_classes: int) -> Mixer | None:
    if not values["mixup"]:
        return None
    return lambda x, y, g: mixup(x, y, num_classes, g, alpha=values["mixup"])


@MIXINGS.register("cutmix")
def cutmix_operation(values: dict, num_classes: int) -> Mixer | None:
    if not values["cutmix"]:
        return None
    return lambda x, y, g: cutmix(x, y, num_classes, g, alpha=values["cutmix"])


def create_mixing(cfg: AugmentConfig, channels: int, num_classes: int, *, values: dict | None = None) -> Mixer | None:
    """None, or a function (float images, labels, generator) -> (images, soft targets) for
    mixup and/or cutmix (when both are on, each batch picks one with equal chance)."""
    values = values if values is not None else resolve(cfg, channels)[0]
    built = (MIXINGS.create(name, values, num_classes) for name in MIXING_ORDER)
    mixers = [mixer for mixer in built if mixer is not None]
    if not mixers:
        return None

    def mix(images, labels, generator):
        choice = int(torch.randint(len(mixers), (1,), generator=generator, device=generator.device))
        return mixers[choice](images, labels, generator)
    return mix
