"""Batched colour augmentation (seed §1): Wei's HSV recipe, colour jittering and fancy PCA.

Seed §1: "raise saturation and value (S and V components of the HSV color space) of all pixels
to a power between 0.25 and 4 (same for all pixels within a patch), multiply these values by a
factor between 0.7 and 1.4, and add to them a value between -0.1 and 0.1. Also, you could add a
value between [-0.1, 0.1] to the hue". Fancy PCA is AlexNet's lighting noise (Krizhevsky et al.,
2012). Like `geometric.py`, every function takes a whole RGB batch (N, 3, H, W), uint8 or float
in [0, 1], on any device, draws one set of parameters per image from an explicit
`torch.Generator`, and returns a batch of the same dtype (uint8 is rounded and clamped).
"""
from __future__ import annotations

import math

import torch

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def require_rgb(images: torch.Tensor, where: str) -> None:
    """Refuse anything that is not an (N, 3, H, W) batch, with a message that says what to do."""
    if images.ndim != 4:
        raise ValueError(f"{where}: expected a batch of images (N, C, H, W), got shape {tuple(images.shape)}")
    channels = images.shape[1]
    if channels != 3:
        raise ValueError(
            f"{where}: color operations need RGB images (3 channels), got {channels} "
            f"channel{'s' if channels != 1 else ''}; Fashion-MNIST is gray — use geometric "
            "augmentation only, or data.channels=3")


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float images are assumed to be in [0, 1] already."""
    return images.float() / 255 if images.dtype == torch.uint8 else images


def from_unit_float(result: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Back to the dtype of `like`: uint8 is rounded, float keeps [0, 1]."""
    result = result.clamp(0, 1)
    if like.dtype == torch.uint8:
        return (result * 255).round().to(torch.uint8)
    return result.to(like.dtype)


def uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def log_uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """exp(uniform(log low, log high)): for (0.25, 4), a power of 1/4 is as likely as 4."""
    low, high = bounds
    return torch.exp(uniform(n, (math.log(low), math.log(high)), generator))


def choose(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """(N,) bool on the images' device: which images an operation of probability p changes."""
    return (torch.rand(len(images), generator=generator, device=generator.device) < p).to(images.device)


def apply_with_probability(result, images, p, generator):
    """Keep `result` for a random fraction p of the images, the input for the rest."""
    return torch.where(choose(images, p, generator).view(-1, 1, 1, 1), result, images)


def per_image(values: torch.Tensor, device) -> torch.Tensor:
    return values.to(device).view(-1, 1, 1)  # (N,) -> (N, 1, 1) against (N, H, W)


# ---------------------------------------------------------------------------------------------
# Colour spaces


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Float (N, 3, H, W) RGB in [0, 1] -> HSV, all three in [0, 1), H as a fraction of a turn.

    Same conventions as Python's `colorsys`: gray pixels get H = S = 0; ties between maximal
    channels go to red, then green.
    """
    require_rgb(x, "rgb_to_hsv")
    r, g, b = x.unbind(1)  # each (N, H, W)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    gray = delta == 0
    safe = torch.where(gray, torch.ones_like(delta), delta)
    red_max = r == maxc
    green_max = (g == maxc) & ~red_max
    hue = torch.where(red_max, (g - b) / safe,
                      torch.where(green_max, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(gray, torch.zeros_like(hue), torch.remainder(hue / 6, 1.0))
    saturation = torch.where(gray, torch.zeros_like(delta), delta / torch.where(gray, safe, maxc))
    return torch.stack((hue, saturation, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Float (N, 3, H, W) HSV (H in [0, 1) turns, S, V in [0, 1]) -> RGB in [0, 1].

    Closed form f(n) = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6H) mod 6, n = 5, 3, 1 for
    R, G, B: no branches, one kernel per channel.
    """
    require_rgb(x, "hsv_to_rgb")
    hue, saturation, value = x.unbind(1)
    return _hexcone_rgb(6 * hue, saturation, value)


def _hexcone_rgb(hue6: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """(N, H, W) hue in sixths of a turn (any real: wrapped here), S, V -> RGB (N, 3, H, W)."""
    n = torch.tensor((5.0, 3.0, 1.0), dtype=value.dtype, device=value.device).view(1, 3, 1, 1)
    k = torch.remainder(n + hue6.unsqueeze(1), 6)  # (N, 3, H, W)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)


# ---------------------------------------------------------------------------------------------
# Wei's HSV recipe (seed §1)


def draw_wei_hsv_parameters(n: int, generator: torch.Generator,
                            power=(0.25, 4.0),     # seed §1: "a power between 0.25 and 4"
                            factor=(0.7, 1.4),     # seed §1: "a factor between 0.7 and 1.4"
                            shift=(-0.1, 0.1),     # seed §1: "a value between -0.1 and 0.1"
                            hue_shift=(-0.1, 0.1),  # seed §1: "[-0.1, 0.1] to the hue"
                            ) -> dict[str, torch.Tensor]:
    """One draw per image, (N,) tensors; S and V get separate draws.

    The seed gives only the range of the power. We draw it log-uniformly, so that squashing
    (power 4) and stretching (power 1/4) are equally likely and the median is 1 (no change);
    a uniform draw on [0.25, 4] would pick a power above 1 four times out of five.
    """
    return {
        "saturation_power": log_uniform(n, power, generator),
        "saturation_factor": uniform(n, factor, generator),
        "saturation_shift": uniform(n, shift, generator),
        "value_power": log_uniform(n, power, generator),
        "value_factor": uniform(n, factor, generator),
        "value_shift": uniform(n, shift, generator),
        "hue_shift": uniform(n, hue_shift, generator),
    }


CHUNK_PIXELS = 1 << 16  # pixels per chunk: its dozen float32 planes (256 KB each) stay in cache


def pixel_chunks(n: int, pixels: int, chunk: int = CHUNK_PIXELS):
    """(image slice, pixel slice) pairs covering an (n, C, pixels) batch in cache-sized pieces:
    whole images grouped while they are small, pieces of one image when it is large."""
    if pixels >= chunk:
        for i in range(n):
            for start in range(0, pixels, chunk):
                yield slice(i, i + 1), slice(start, start + chunk)
    else:
        group = chunk // pixels
        for i in range(0, n, group):
            yield slice(i, i + group), slice(None)


def map_chunks(images: torch.Tensor, kernel, parameters: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run kernel(float (n, C, P) chunk in [0, 1], per-image parameters as (n, 1)) over `images`
    chunk by chunk; uint8 or float in, same dtype out (uint8 rounded).

    An elementwise chain of a few dozen torch operations over a whole batch reads and writes
    memory once per operation; chunks sized to the cache make each operation a cache hit
    (measured 2-3x faster than whole-batch operations at 32x32 and 224x224).
    """
    n, channels, height, width = images.shape
    flat = images.reshape(n, channels, height * width)
    out = torch.empty_like(flat)
    p = {name: per_image(v, images.device).view(-1, 1) for name, v in parameters.items()}
    # On the CPU, cache-sized chunks; on an accelerator, one launch per operation for the batch.
    size = CHUNK_PIXELS if images.device.type == "cpu" else n * height * width
    for rows, columns in pixel_chunks(n, height * width, size):
        part = flat[rows, :, columns]
        x = part.float().mul_(1 / 255) if part.dtype == torch.uint8 else part.float()
        result = kernel(x, {name: v[rows] for name, v in p.items()}).clamp_(0, 1)
        if images.dtype == torch.uint8:
            result = result.mul_(255).round_()
        out[rows, :, columns] = result
    return out.view(n, channels, height, width)


def _wei_hsv_kernel(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Wei's HSV on a float chunk (n, 3, P) in [0, 1]; parameters (n, 1).

    The RGB -> HSV -> RGB round trip of `rgb_to_hsv` and `hsv_to_rgb`, fused: the hue stays in
    sixths of a turn, wrapped once into [0, 6), and each channel is V - V S ramp(H) with the
    hexcone's ramp written without sectors (R: clamp(2 - |H - 3|), G: the same about 5, B about 1,
    each distance taken around the circle).
    """
    r, g, b = x.unbind(1)  # each (n, P)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    # Which channel holds the maximum, as 0/1 floats: comparisons written straight into float
    # tensors and torch.lerp (exact at weights 0 and 1) are 5-15x faster here than torch.where.
    red_max = torch.eq(r, maxc, out=torch.empty_like(maxc))
    green_max = torch.eq(g, maxc, out=torch.empty_like(maxc))
    # Hue in sixths of a turn, colorsys' ties (red, then green); gray pixels get 0.
    blue_or_green = torch.lerp(torch.add(r - g, delta, alpha=4), torch.add(b - r, delta, alpha=2), green_max)
    hue = torch.lerp(blue_or_green, g - b, red_max).div_(delta.clamp_min(1e-12)).add_(6 * p["hue_shift"])
    hue.sub_(torch.floor(hue / 6).mul_(6))  # into [0, 6): hue is an angle
    # S, V: power, then factor, then shift, in the seed's order; clamped back into [0, 1].
    # x^p as exp(p log x) (x >= 0, p > 0; 0 stays 0): 3-4x faster than torch.pow here.
    saturation = delta.div_(maxc.clamp_min(1e-12)).log_().mul_(p["saturation_power"]).exp_()
    saturation = saturation.mul_(p["saturation_factor"]).add_(p["saturation_shift"]).clamp_(0, 1)
    value = maxc.log_().mul_(p["value_power"]).exp_().mul_(p["value_factor"]).add_(p["value_shift"]).clamp_(0, 1)
    chroma = saturation.mul_(value)  # V S
    out = torch.empty_like(x)
    ramp_red = torch.rsub((hue - 3).abs_(), 2)
    ramp_green = torch.maximum(torch.rsub((hue - 5).abs_(), 2), 1 - hue)
    ramp_blue = torch.maximum(torch.rsub((hue - 1).abs_(), 2), hue - 5)
    for channel, ramp in enumerate((ramp_red, ramp_green, ramp_blue)):
        torch.sub(value, ramp.clamp_(0, 1).mul_(chroma), out=out[:, channel])
    return out


def apply_wei_hsv(images: torch.Tensor, parameters: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply given per-image parameters (from `draw_wei_hsv_parameters`) to every pixel."""
    require_rgb(images, "wei_hsv")
    return map_chunks(images, _wei_hsv_kernel, parameters)


def wei_hsv(images: torch.Tensor, generator: torch.Generator, power=(0.25, 4.0), factor=(0.7, 1.4),
            shift=(-0.1, 0.1), hue_shift=(-0.1, 0.1), p: float = 1.0) -> torch.Tensor:
    """Seed §1's HSV augmentation, each image with probability p; see `draw_wei_hsv_parameters`."""
    require_rgb(images, "wei_hsv")
    parameters = draw_wei_hsv_parameters(len(images), generator, power, factor, shift, hue_shift)
    keep = choose(images, p, generator)
    if bool(keep.all()):
        return apply_wei_hsv(images, parameters)
    # Only the chosen images go through the colour-space round trip (the costly part).
    out = images.clone()
    if bool(keep.any()):
        out[keep] = apply_wei_hsv(images[keep], {k: v.to(images.device)[keep] for k, v in parameters.items()})
    return out


# ---------------------------------------------------------------------------------------------
# Colour jittering (torchvision ColorJitter semantics, batched)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def color_jitter(images: torch.Tensor, generator: torch.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
                 p: float = 1.0) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, as torchvision's ColorJitter, per image.

    Factors are uniform in [1 - s, 1 + s] (floored at 0), the hue shift uniform in [-hue, hue]
    turns. Fixed order brightness, contrast, saturation, hue (torchvision shuffles the order per
    call; a fixed order keeps the whole batch one kernel per stage). Each stage clamps to [0, 1].
    Brightness scales; contrast blends with the image's mean gray; saturation blends with its
    gray version; a strength of 0 skips the stage, so all-zero strengths are the identity.
    """
    require_rgb(images, "color_jitter")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"color_jitter: hue must be in [0, 0.5] turns, got {hue}")
    n, device = len(images), images.device

    def factors(strength):
        return per_image(uniform(n, (max(0.0, 1 - strength), 1 + strength), generator), device).unsqueeze(1)

    x = to_unit_float(images)
    if brightness > 0:
        x = (x * factors(brightness)).clamp(0, 1)
    if contrast > 0:
        mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        f = factors(contrast)
        x = (f * x + (1 - f) * mean).clamp(0, 1)
    if saturation > 0:
        f = factors(saturation)
        x = (f * x + (1 - f) * grayscale(x)).clamp(0, 1)
    if hue > 0:
        hsv = rgb_to_hsv(x)
        shifted = torch.remainder(hsv[:, 0] + per_image(uniform(n, (-hue, hue), generator), device), 1.0)
        x = hsv_to_rgb(torch.stack((shifted, hsv[:, 1], hsv[:, 2]), dim=1))
    return apply_with_probability(from_unit_float(x, images), images, p, generator)


# ---------------------------------------------------------------------------------------------
# Fancy PCA (AlexNet)


class FancyPCA:
    """AlexNet's fancy PCA (Krizhevsky et al., 2012; seed §1): lighting noise along the
    principal components of the training set's RGB values.

    To every pixel of an image it adds [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T, where p_i, l_i are the
    eigenvectors and eigenvalues of the 3x3 covariance of RGB values (here in [0, 1] units) and
    a_i ~ N(0, 0.1) is drawn once per image. AlexNet multiplies by the eigenvalue l_i itself
    (a variance, not its square root); we follow the paper. Offsets are therefore small: on
    CIFAR-like data l_1 is about 0.06, so a typical shift is ~0.006 (~1.5 grey levels of 255).
    """

    def __init__(self, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor):
        self.eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float32)    # (3,), descending
        self.eigenvectors = torch.as_tensor(eigenvectors, dtype=torch.float32)  # (3, 3), columns p_i

    @classmethod
    def fit(cls, images: torch.Tensor, max_pixels: int = 2_000_000,
            generator: torch.Generator | None = None) -> "FancyPCA":
        """PCA of the RGB values of a training set (N, 3, H, W), uint8 (or float in [0, 1]).

        For speed, at most `max_pixels` pixels are used, drawn uniformly (with replacement) with
        `generator` (seeded 0 if None); two million pixels fix a 3x3 covariance to ~0.1 %.
        """
        require_rgb(images, "FancyPCA.fit")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        n, _, height, width = images.shape
        flat = images.flatten(2)  # (N, 3, H*W), a view: no copy of the data set
        total = n * height * width
        if total > max_pixels:
            index = torch.randint(0, total, (max_pixels,), generator=generator,
                                  device=generator.device).to(images.device)
            pixels = flat[index // (height * width), :, index % (height * width)]  # (K, 3)
        else:
            pixels = flat.permute(0, 2, 1).reshape(-1, 3)
        pixels = pixels.double() / 255 if images.dtype == torch.uint8 else pixels.double()
        centered = pixels - pixels.mean(0)
        covariance = centered.T @ centered / (len(pixels) - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.cpu())  # ascending
        order = eigenvalues.argsort(descending=True)
        return cls(eigenvalues[order].clamp(min=0), eigenvectors[:, order])

    def draw_offsets(self, n: int, generator: torch.Generator, std: float = 0.1) -> torch.Tensor:
        """(N, 3) RGB offsets in [0, 1] units: sum_i p_i a_i l_i with a_i ~ N(0, std)."""
        alphas = torch.randn(n, 3, generator=generator, device=generator.device) * std
        values, vectors = self.eigenvalues.to(alphas.device), self.eigenvectors.to(alphas.device)
        return (alphas * values) @ vectors.T

    def __call__(self, images: torch.Tensor, generator: torch.Generator, std: float = 0.1) -> torch.Tensor:
        """std: AlexNet's 0.1 (seed §1: "standard deviation 0.1")."""
        require_rgb(images, "FancyPCA")
        offsets = self.draw_offsets(len(images), generator, std).to(images.device).view(-1, 3, 1, 1)
        if images.dtype == torch.uint8:
            # round(x + 255 o) = x + round(255 o) for whole x: integer arithmetic, no float copy.
            steps = (255 * offsets).round().to(torch.int16)
            return (images.to(torch.int16) + steps).clamp_(0, 255).to(torch.uint8)
        return (images + offsets.to(images.dtype)).clamp_(0, 1)

    def state_dict(self) -> dict[str, list]:
        """Plain lists, so it can be saved as JSON in the run directory."""
        return {"eigenvalues": self.eigenvalues.tolist(), "eigenvectors": self.eigenvectors.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, list]) -> "FancyPCA":
        return cls(torch.tensor(state["eigenvalues"]), torch.tensor(state["eigenvectors"]))
