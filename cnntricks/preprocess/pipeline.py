"""The input pipeline of a run (seed §2): per-channel normalization, then optional whitening.

Fitted once on the training split, saved in the run directory (`preprocess.json`, and
`preprocess.safetensors` for whitening), applied the same way in training, evaluation and
prediction:

- `preprocess.whiten=zca`: dense ZCA over the whole image (D = C·H·W dimensions; up to 8192,
  e.g. 28x28 or 32x32x3 — the D x D covariance of bigger images does not fit in memory);
- `preprocess.whiten=patch`: ZCA of kxk patches as a frozen convolution (Coates & Ng 2011,
  airbench), which keeps the image's shape and works at any size, 224x224x3 included.

- `preprocess.whiten=pca`: the seed's PCA whitening, Xrot / sqrt(S + eps), on the top
  `preprocess.components`; its output is k numbers per image, not an image, so it feeds the
  MLP (as (N, k, 1, 1)), not the conv nets.

Registry: `WHITENINGS` (preprocess.whiten) - none, pca, zca, patch: `(cfg, images, normalization, generator)`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnntricks.config import PreprocessConfig
from cnntricks.preprocess.normalize import Normalization, fit_normalization
from cnntricks.preprocess.whiten import fit_patch_whitening, fit_whitening
from cnntricks.registry import Registry
from cnntricks.rundir import PREPROCESS, DamagedFileError, load_tensors, read_json, save_tensors, write_atomic

WHITENINGS = Registry("whitening")

FIT_IMAGES = 10_000  # dense whitening is fitted on at most this many training images (seeded)


@dataclass
class Preprocess:
    normalization: Normalization
    zca_mean: torch.Tensor | None = None    # (D,) float32, dense ZCA
    zca_matrix: torch.Tensor | None = None  # (D, D) float32, symmetric
    patch: nn.Conv2d | None = None          # frozen patch-ZCA convolution
    pca_mean: torch.Tensor | None = None    # (D,) float32, PCA whitening
    pca_matrix: torch.Tensor | None = None  # (D, k) float32: U_k / sqrt(S_k + eps)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 (N, C, H, W), as the model sees it; PCA: (N, k, 1, 1)."""
        x = self.normalization(images)
        # flatten(1) and x.shape[0], not len(x): an exported graph (cnntricks export) keeps its batch dynamic
        if self.pca_matrix is not None:  # seed §2: Xwhite = X·U_k / sqrt(S_k + eps)
            flat = x.flatten(1) - self.pca_mean.to(x.device)
            return (flat @ self.pca_matrix.to(x.device)).reshape(x.shape[0], -1, 1, 1)
        if self.zca_matrix is not None:
            shape = x.shape
            flat = x.flatten(1) - self.zca_mean.to(x.device)
            x = (flat @ self.zca_matrix.to(x.device)).reshape(shape)
        if self.patch is not None:
            x = self.patch.to(x.device)(x)
        return x

    def save(self, run_dir: str | Path) -> None:
        """preprocess.json (and preprocess.safetensors with a whitening) in the run directory, atomically."""
        run_dir = Path(run_dir)
        tensors = {}
        if self.zca_matrix is not None:
            tensors.update(zca_mean=self.zca_mean, zca_matrix=self.zca_matrix)
        if self.pca_matrix is not None:
            tensors.update(pca_mean=self.pca_mean, pca_matrix=self.pca_matrix)
        if self.patch is not None:
            tensors.update(patch_weight=self.patch.weight.detach(), patch_bias=self.patch.bias.detach())
        if tensors:
            tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
            write_atomic(run_dir / "preprocess.safetensors", lambda path: save_tensors(tensors, path))
        write_atomic(run_dir / PREPROCESS, json.dumps(self.normalization.to_dict()))


def model_input_shape(cfg: PreprocessConfig, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(C, H, W) the model receives: the image's, or (k, 1, 1) after PCA whitening."""
    if cfg.whiten == "pca":
        channels, height, width = image_shape
        return (cfg.components or channels * height * width, 1, 1)
    return tuple(image_shape)


def load_preprocess(run_dir: str | Path) -> Preprocess:
    run_dir = Path(run_dir)
    saved = read_json(run_dir / PREPROCESS)
    try:
        normalization = Normalization(**saved)
    except TypeError:  # missing (None) or not the fitted mean and std
        raise DamagedFileError(f"{run_dir / PREPROCESS} is missing or damaged (it holds the input normalization "
                               f"fitted on the training split); train the run again") from None
    path = run_dir / "preprocess.safetensors"
    if not path.exists():
        return Preprocess(normalization)
    tensors = load_tensors(path)
    patch = None
    if "patch_weight" in tensors:
        weight = tensors["patch_weight"]
        patch = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
        patch.load_state_dict({"weight": weight, "bias": tensors["patch_bias"]})
        patch.requires_grad_(False)
    return Preprocess(normalization, tensors.get("zca_mean"), tensors.get("zca_matrix"), patch,
                      tensors.get("pca_mean"), tensors.get("pca_matrix"))


def fit_preprocess(cfg: PreprocessConfig, images: torch.Tensor, generator: torch.Generator) -> Preprocess:
    """Fit on the training split's uint8 images only (never validation or test)."""
    normalization = fit_normalization(images, cfg.normalize)
    return WHITENINGS.get(cfg.whiten)(cfg, images, normalization, generator)


def whitening_sample(images: torch.Tensor, normalization: Normalization,
                     generator: torch.Generator) -> torch.Tensor:
    """The normalized images a whitening is fitted on: at most FIT_IMAGES, drawn with `generator`."""
    if len(images) > FIT_IMAGES:
        images = images[torch.randperm(len(images), generator=generator)[:FIT_IMAGES]]
    return normalization(images)


@WHITENINGS.register("none")
def fit_no_whitening(cfg: PreprocessConfig, images: torch.Tensor, normalization: Normalization,
                     generator: torch.Generator) -> Preprocess:
    return Preprocess(normalization)  # draws nothing from `generator`


@WHITENINGS.register("pca")
def fit_pca(cfg: PreprocessConfig, images: torch.Tensor, normalization: Normalization,
            generator: torch.Generator) -> Preprocess:
    whitening = fit_whitening(whitening_sample(images, normalization, generator), "pca",
                              components=cfg.components, eps=cfg.eps)
    return Preprocess(normalization, pca_mean=whitening.mean.float(), pca_matrix=whitening.matrix().float())


@WHITENINGS.register("zca")
def fit_zca(cfg: PreprocessConfig, images: torch.Tensor, normalization: Normalization,
            generator: torch.Generator) -> Preprocess:
    whitening = fit_whitening(whitening_sample(images, normalization, generator), "zca", eps=cfg.eps)
    return Preprocess(normalization, whitening.mean.float(), whitening.matrix().float())


@WHITENINGS.register("patch")
def fit_patch(cfg: PreprocessConfig, images: torch.Tensor, normalization: Normalization,
              generator: torch.Generator) -> Preprocess:
    """Patch ZCA; its patches are drawn from the same `generator`, after the image sample."""
    patch = fit_patch_whitening(whitening_sample(images, normalization, generator),
                                patch_size=cfg.patch_size, eps=cfg.eps, generator=generator, method="zca")
    return Preprocess(normalization, patch=patch)
