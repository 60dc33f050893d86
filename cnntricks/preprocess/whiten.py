"""PCA and ZCA whitening (seed §2), dense for small images and patch-based for large ones.

Dense (`fit_whitening`), exactly the seed's recipe on images flattened to D = C·H·W:

    X -= mean(X)                       # zero-center, per dimension, on the training split
    cov = X.T @ X / N                  # (D, D)
    U, S = eigh(cov), sorted descending
    Xrot = X @ U                       # decorrelate; X @ U[:, :k] keeps the top k
    Xwhite = Xrot / sqrt(S + eps)      # PCA whitening
    Xzca = Xwhite @ U.T                # ZCA: U diag(1/sqrt(S + eps)) U.T, keeps the image shape

Large images: the dense covariance is D×D. For 224x224x3, D = 150,528 and the matrix alone
is 150,528² × 4 bytes ≈ 90 GB in float32 (its eigendecomposition needs more), so it cannot
be done on an ordinary machine; this is where Keras' ImageDataGenerator(zca_whitening=True)
fails. `fit_whitening` therefore refuses D > MAX_DENSE_DIMENSIONS and points here.

The practical method (`fit_patch_whitening`) whitens small k×k patches instead, as a frozen
first convolution (Coates & Ng 2011, "The importance of encoding versus training with sparse
coding and vector quantization"; airbench's `init_whitening_conv`): sample patches from the
training images, take their (C·k·k)² covariance (27×27 for 3x3 RGB), eigendecompose, and use
the rows of diag(1/sqrt(S + eps)) U^T as conv filters. Its cost does not depend on image size.

Inputs: uint8 images are divided by 255 (statistics in [0, 1] units); float images are used
as they are, so fit and apply on the same kind of input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAX_DENSE_DIMENSIONS = 8192  # D×D float64 covariance = 512 MiB at D = 8192 (64x64x2)
_METHODS = ("pca", "zca")


def _as_float(images: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 -> [0, 1]; float -> unchanged units."""
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255
    return images.to(dtype)


def _sorted_eigh(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues descending (clamped at 0) and eigenvectors as columns, sign-fixed.

    The sign of an eigenvector is arbitrary; fixing its largest entry positive makes fits
    repeatable across runs and machines.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp_min(0), eigenvectors.flip(1)
    largest = eigenvectors.abs().argmax(dim=0)
    signs = torch.sign(eigenvectors[largest, torch.arange(eigenvectors.shape[1])])
    return eigenvalues, eigenvectors * torch.where(signs == 0, 1.0, signs).to(eigenvectors.dtype)


@dataclass
class Whitening:
    mean: torch.Tensor         # (D,) float64, per-dimension training mean
    eigenvectors: torch.Tensor  # (D, D) float64, columns U, by descending eigenvalue
    eigenvalues: torch.Tensor   # (D,) float64, S: variance along each column of U
    image_shape: tuple[int, int, int]  # (C, H, W)
    method: str = "pca"         # "pca": (N, k) whitened components; "zca": (N, C, H, W)
    components: int | None = None  # keep the top k eigenvectors; None keeps all D
    eps: float = 1e-5           # seed §2: "Xrot / np.sqrt(S + 1e-5)"; larger damps noise more

    def _centered(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> centered (N, D) float32."""
        if tuple(images.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"whitening was fitted on images of shape {tuple(self.image_shape)}, "
                             f"got {tuple(images.shape[1:])}; fit it on images of this shape")
        flat = _as_float(images).reshape(len(images), -1)
        return flat - self.mean.to(flat.device, torch.float32)

    def _top(self, k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        k = len(self.eigenvalues) if k is None else k
        return self.eigenvectors[:, :k], self.eigenvalues[:k]

    def matrix(self) -> torch.Tensor:
        """(D, k) for PCA (U_k / sqrt(S_k + eps)); (D, D) symmetric for ZCA."""
        vectors, values = self._top(self.components)
        scaled = vectors / torch.sqrt(values + self.eps)  # Xwhite = X @ (U / sqrt(S + eps))
        return scaled @ vectors.T if self.method == "zca" else scaled

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> float32 (N, k) for PCA, (N, C, H, W) for ZCA."""
        centered = self._centered(images)
        out = centered @ self.matrix().to(centered.device, torch.float32)
        return out.reshape(len(images), *self.image_shape) if self.method == "zca" else out

    def project(self, images: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Seed's Xrot_reduced = X @ U[:, :k]: (N, k), not whitened; variances are S[:k]."""
        vectors, _ = self._top(k)
        centered = self._centered(images)
        return centered @ vectors.to(centered.device, torch.float32)

    def reduce(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """Images rebuilt from their top k components, (N, C, H, W), in [0, 1] units for uint8."""
        vectors, _ = self._top(k)
        vectors = vectors.to(images.device, torch.float32)
        rebuilt = self.project(images, k) @ vectors.T + self.mean.to(images.device, torch.float32)
        return rebuilt.reshape(len(images), *self.image_shape)

    def eigenvectors_as_images(self, k: int) -> torch.Tensor:
        """The top k eigenvectors ("eigen-images") as float32 (k, C, H, W), for the demo."""
        return self.eigenvectors[:, :k].T.float().reshape(k, *self.image_shape)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat dict of tensors for safetensors (no strings or None: those are encoded)."""
        return {"mean": self.mean, "eigenvectors": self.eigenvectors.contiguous(),
                "eigenvalues": self.eigenvalues, "image_shape": torch.tensor(self.image_shape),
                "method": torch.tensor(_METHODS.index(self.method)),
                "components": torch.tensor(-1 if self.components is None else self.components),
                "eps": torch.tensor(self.eps, dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Whitening:
        components = int(tensors["components"])
        return cls(tensors["mean"], tensors["eigenvectors"], tensors["eigenvalues"],
                   tuple(int(v) for v in tensors["image_shape"]), _METHODS[int(tensors["method"])],
                   None if components < 0 else components, float(tensors["eps"]))


def fit_whitening(images: torch.Tensor, method: str = "pca", components: int | None = None,
                  eps: float = 1e-5, generator: torch.Generator | None = None,
                  max_images: int | None = None) -> Whitening:
    """Dense PCA/ZCA whitening fitted on (N, C, H, W) training images (seed §2).

    max_images: fit on a random subset of that many images, drawn with `generator`.
    """
    if method not in _METHODS:
        raise ValueError(f"whitening method {method!r} is unknown; use one of {_METHODS}")
    image_shape = tuple(images.shape[1:])
    dims = images[0].numel()
    if dims > MAX_DENSE_DIMENSIONS:
        gib = dims * dims * 4 / 2**30
        raise ValueError(
            f"dense whitening of {image_shape} images needs a {dims}x{dims} covariance "
            f"(~{gib:,.1f} GiB in float32, more for its eigendecomposition); the limit is "
            f"D = C*H*W <= {MAX_DENSE_DIMENSIONS}. Use patch whitening instead "
            f"(preprocess.whiten=patch, fit_patch_whitening): it whitens k x k patches as a "
            f"frozen first convolution and its cost does not depend on image size.")
    if components is not None and not 1 <= components <= dims:
        raise ValueError(f"whitening components={components} must be between 1 and D={dims}")
    if max_images is not None and max_images < len(images):
        images = images[torch.randperm(len(images), generator=generator)[:max_images]]
    chunk = max(1, 2**22 // dims)  # ~32 MiB of float64 at a time: never a copy of the whole set
    total = torch.zeros(dims, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        total += _as_float(images[start:start + chunk], torch.float64).reshape(-1, dims).sum(0).cpu()
    mean = total / len(images)
    covariance = torch.zeros(dims, dims, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = _as_float(images[start:start + chunk], torch.float64).reshape(-1, dims).cpu() - mean
        covariance.addmm_(x.T, x)
    eigenvalues, eigenvectors = _sorted_eigh(covariance / len(images))
    return Whitening(mean, eigenvectors, eigenvalues, image_shape, method, components, eps)


def _sample_patches(images: torch.Tensor, size: int, max_patches: int,
                    generator: torch.Generator | None) -> torch.Tensor:
    """(M, C·size·size) float64 patches: all of them if they fit in max_patches, else a sample."""
    n, channels, height, width = images.shape
    rows, cols = height - size + 1, width - size + 1
    if rows < 1 or cols < 1:
        raise ValueError(f"patch_size={size} is larger than the images ({height}x{width})")
    if n * rows * cols <= max_patches:  # every patch, by unfold: (N, C·k·k, positions)
        unfolded = F.unfold(_as_float(images, torch.float64), size)
        return unfolded.transpose(1, 2).reshape(-1, channels * size * size)
    index = torch.randint(n, (max_patches,), generator=generator)
    top = torch.randint(rows, (max_patches,), generator=generator)
    left = torch.randint(cols, (max_patches,), generator=generator)
    offsets = torch.arange(size, device=images.device)
    patches = []
    for start in range(0, max_patches, 32768):  # bounds the broadcast index tensors
        i, y, x = (t[start:start + 32768].to(images.device) for t in (index, top, left))
        ys = (y[:, None] + offsets)[:, None, :, None]   # (m, 1, k, 1)
        xs = (x[:, None] + offsets)[:, None, None, :]   # (m, 1, 1, k)
        cs = torch.arange(channels, device=images.device)[None, :, None, None]
        patch = images[i[:, None, None, None], cs, ys, xs]  # (m, C, k, k)
        patches.append(_as_float(patch, torch.float64).reshape(len(i), -1))
    return torch.cat(patches)


def fit_patch_whitening(images: torch.Tensor, patch_size: int = 3, components: int | None = None,
                        eps: float = 1e-5, max_patches: int = 200_000,
                        generator: torch.Generator | None = None, method: str = "pca") -> nn.Conv2d:
    """A frozen conv that whitens patch_size² patches of (N, C, H, W) training images.

    "pca": out_channels = components (default C·k·k), no padding; channel i is the patch's
    i-th principal component divided by sqrt(S_i + eps), so outputs have covariance ≈ I.
    "zca": U diag(1/sqrt(S + eps)) U^T keeping the rows of each channel's centre pixel:
    C -> C channels, padding k//2, so the output keeps the image shape (Coates & Ng 2011).
    The bias subtracts the patch mean, so the conv also zero-centres.
    """
    if method not in _METHODS:
        raise ValueError(f"patch whitening method {method!r} is unknown; use one of {_METHODS}")
    channels, size = images.shape[1], patch_size
    patches = _sample_patches(images, size, max_patches, generator)  # (M, d), d = C·k·k
    mean = patches.mean(0)
    centered = patches - mean
    eigenvalues, eigenvectors = _sorted_eigh(centered.T @ centered / len(patches))  # (d,), (d, d)
    weight = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]  # rows: filters, (d, d)
    if method == "zca":
        centre = torch.arange(channels) * size * size + (size // 2) * size + size // 2
        weight = (eigenvectors @ weight)[centre]  # (C, d): centre taps of the symmetric ZCA
    elif components is not None:
        weight = weight[:components]
    conv = nn.Conv2d(channels, len(weight), size, padding=size // 2 if method == "zca" else 0)
    conv.weight.data = weight.float().reshape(len(weight), channels, size, size)
    conv.bias.data = (-weight @ mean).float()
    conv.requires_grad_(False)  # frozen: an initialisation from data, not a learned layer
    return conv


def whitened_patch_covariance(conv: nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
    """Covariance of conv outputs over images and positions, (out, out); ≈ I when whitened."""
    with torch.no_grad():
        out = conv(_as_float(images, conv.weight.dtype).to(conv.weight.device))
    flat = out.transpose(0, 1).reshape(out.shape[1], -1).double()  # (out, N·positions)
    flat = flat - flat.mean(1, keepdim=True)
    return flat @ flat.T / flat.shape[1]
