"""Weights in (seed §4: "fine-tune ... a pre-trained model"): start a model from another run's or
another tool's weights.

`model.pretrained` names the source:
  - a cnntricks run directory: its newest intact checkpoint (rundir.find_checkpoint);
  - a published name (resnet18, resnet34, resnet50: torchvision's ImageNet weights, for the models
    of the same name), downloaded once into the cache (transfer/hub.py); a path that exists wins;
  - a .safetensors file;
  - a .pth / .pt state dict, read with `torch.load(weights_only=True)`: tensors and plain
    containers only; a file holding anything else (a pickled model object, code) is refused, never
    unpickled (DESIGN: never unpickle a file you did not write). A checkpoint dict that wraps the
    weights under "state_dict" or "model" is unwrapped.
`load_pretrained(model, source)` copies every tensor whose name and shape fit the model. The
classifier head is never copied: it is the new model's, for the new classes. Its keys are those of
the module `model.head` (`head.*` in the zoo, torchvision's `fc.*` in resnet18/34/50); a file's
`head.*` and the keys under the model's head name are left out. A first
convolution that reads another number of channels is adapted: RGB weights summed over their input
channels for gray images, gray weights repeated (and divided by 3) for RGB images, so the filter's
response to a gray image is unchanged. With `strict` (transfer.strict, the default) any other
mismatch is a ConfigError listing the keys; without it, what does not fit is skipped and listed.

The weights were trained on inputs preprocessed one way; `source_preprocess` gives that way
(transfer.normalization=source): for a run directory its whole preprocessing when the new images
have its shape, else its per-channel normalization adapted to the channels (RGB -> gray: the channel
means of mean and std), else None with the reason (a whitening fitted on images of another shape);
for a published name the ImageNet mean and std it was trained with, adapted the same way.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnntricks.config import ConfigError
from cnntricks.preprocess.normalize import Normalization
from cnntricks.preprocess.pipeline import Preprocess, load_preprocess
from cnntricks.registry import closest
from cnntricks.rundir import (CONFIG, DATA, PREPROCESS, DamagedFileError, find_checkpoint, load_tensors, natural_key,
                              read_json)
from cnntricks.transfer.hub import PUBLISHED, fetch

HEAD = "head."  # the classifier layer of the zoo's models (nn/models.py: Classifier); resnet18/34/50: fc.
LISTED = 8      # mismatched keys named in a message; the rest are counted


@dataclass
class PretrainedWeights:
    """What `load_pretrained` did: the source file, the tensors copied, adapted and skipped."""
    source: Path
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # first convolution, channels summed or repeated
    skipped: list[str] = field(default_factory=list)  # "name: why" (not strict)

    def describe(self) -> str:
        text = f"{len(self.loaded)} tensors from {self.source}"
        if self.adapted:
            text += f"; adapted to the image channels: {', '.join(self.adapted)}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} that do not fit: {_listed(self.skipped)}"
        return text


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return "; ".join(items[:LISTED]) + more


def published_name(source: str | Path) -> str | None:
    """The published weights `source` names (transfer/hub.py), or None; a path that exists wins."""
    return str(source) if str(source) in PUBLISHED and not Path(source).expanduser().exists() else None


def weights_file(source: str | Path) -> Path:
    """The file `model.pretrained` names: a run directory's newest intact model.safetensors, the
    published weights of that name (downloaded once), or the file."""
    if (name := published_name(source)) is not None:
        return fetch(name)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise ConfigError(f"model.pretrained: {path} is a folder but not a run directory (no config.yaml); "
                              f"give a run directory, a .safetensors file or a .pth/.pt state dict")
        folder = find_checkpoint(path, "starting from")
        if folder is None:
            raise ConfigError(f"model.pretrained: the run {path} has no checkpoint yet; train it first")
        return folder / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"model.pretrained: '{path}' does not exist{closest(path.name, PUBLISHED)}; give a run "
                          f"directory, a .safetensors file or a .pth/.pt state dict, or the name of published "
                          f"weights ({', '.join(PUBLISHED)})")
    return path


def read_weights(source: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """(file, state dict) of a weights source (see the module docstring); never unpickles code."""
    path = weights_file(source)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise DamagedFileError(f"model.pretrained: {path} is not a state dict of tensors that can be read "
                                   f"without running code from the file ({first}); save it with "
                                   f"torch.save(model.state_dict(), path) or as .safetensors") from None
        for key in ("state_dict", "model"):  # a training checkpoint wrapping the weights
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    else:
        state = load_tensors(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DamagedFileError(f"model.pretrained: {path} holds no state dict (name -> tensor)")
    return path, {str(k).removeprefix("module."): v for k, v in state.items()}  # DataParallel's prefix


def _first_conv(state: dict[str, torch.Tensor]) -> str | None:
    convs = sorted((k for k, v in state.items() if v.ndim == 4 and k.endswith("weight")), key=natural_key)
    return convs[0] if convs else None


def _adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A first conv's weight (out, in, kH, kW) made to read `channels`, or None when it cannot be."""
    if weight.shape[1] == 3 and channels == 1:  # gray x in every channel: the sum of the RGB filters
        return weight.sum(1, keepdim=True)
    if weight.shape[1] == 1 and channels == 3:  # the same response to a gray image, spread over RGB
        return weight.repeat(1, 3, 1, 1) / 3
    return None


def head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of `model.head`: "head." in the zoo, "fc." in torchvision's ResNets."""
    head = getattr(model, "head", None)
    return next((f"{name}." for name, module in model.named_modules() if module is head and name), HEAD)


@torch.no_grad()
def load_pretrained(model: nn.Module, source: str | Path, strict: bool = True) -> PretrainedWeights:
    """Copy the source's weights into `model` in place (module docstring); returns what was done."""
    path, state = read_weights(source)
    own = model.state_dict()
    result = PretrainedWeights(path)
    first_own, first_theirs = _first_conv(own), _first_conv(state)
    head = head_prefix(model)
    problems = []
    cut_away = tuple(getattr(model, "cut_away", ()))  # linear@stageK: the stages above K are not in the model
    for name, tensor in state.items():
        if name.startswith((HEAD, head)) or (cut_away and name.startswith(cut_away)):
            continue
        if name not in own:
            problems.append(f"{name}: not in the model")
            continue
        if name == first_theirs == first_own and tensor.shape[1] != own[name].shape[1]:
            adapted = _adapt_channels(tensor, own[name].shape[1])
            if adapted is not None and adapted.shape == own[name].shape:
                tensor = adapted
                result.adapted.append(f"{name} ({state[name].shape[1]} -> {own[name].shape[1]} channels)")
        if tensor.shape != own[name].shape:
            problems.append(f"{name}: {tuple(tensor.shape)} in the file, {tuple(own[name].shape)} in the model")
            continue
        own[name].copy_(tensor.to(own[name].dtype))
        result.loaded.append(name)
    missing = [f"{name}: not in the file" for name in own if not name.startswith(head) and name not in state]
    problems += missing
    if problems and strict:
        raise ConfigError(f"model.pretrained: {len(problems)} weights do not fit model.name/width/depth "
                          f"({_listed(problems)}); build the model the weights were trained as, or set "
                          f"transfer.strict=false to load what fits")
    result.skipped = problems
    if not result.loaded:
        raise ConfigError(f"model.pretrained: no weight of {path} fits this model ({_listed(problems)})")
    return result


def _for_channels(mean: list[float], std: list[float], channels: int) -> Normalization:
    """A per-channel normalization for `channels`: RGB statistics for gray images are their channel
    means, gray statistics for RGB images the same in each channel."""
    if len(mean) == channels:
        return Normalization(list(mean), list(std))
    if channels == 1:
        return Normalization([sum(mean) / len(mean)], [sum(std) / len(std)])
    return Normalization(list(mean) * channels, list(std) * channels)


def source_preprocess(source: str | Path, image_shape: tuple[int, int, int]) -> tuple[Preprocess | None, str]:
    """(the source's preprocessing for images of `image_shape` (C, H, W), or None; what was done)."""
    channels = image_shape[0]
    if (name := published_name(source)) is not None:
        entry = PUBLISHED[name]
        adapted = "" if channels == len(entry.mean) else f", adapted to {channels} channel(s)"
        return Preprocess(_for_channels(list(entry.mean), list(entry.std), channels)), \
            f"the ImageNet mean/std of {name}'s published weights{adapted} (transfer.normalization=source)"
    run = Path(source).expanduser()
    if not run.is_dir() or not (run / PREPROCESS).is_file():
        return None, "the weights carry no input normalization: fitted on this run's training split"
    data = read_json(run / DATA) or {}
    same_shape = [data.get("channels"), data.get("height"), data.get("width")] == list(image_shape)
    if same_shape:
        return load_preprocess(run), f"the input preprocessing of {run} (transfer.normalization=source)"
    if (run / "preprocess.safetensors").exists():
        return None, (f"{run} whitens images of another shape ({data.get('channels')}x{data.get('height')}x"
                      f"{data.get('width')}): the preprocessing is fitted on this run's training split")
    saved = load_preprocess(run).normalization
    return Preprocess(_for_channels(saved.mean, saved.std, channels)), \
        f"the input normalization of {run}, adapted to {channels} channel(s) (transfer.normalization=source)"


def input_preprocess(cfg, images: torch.Tensor) -> tuple[Preprocess, str]:
    """(the preprocessing a fine-tuned model's inputs get, where it came from): the source's
    (transfer.normalization=source, when it has one that fits), else fitted on `images` (uint8,
    the training split) by cfg.preprocess with a seeded subset for dense whitening."""
    from cnntricks.preprocess.pipeline import fit_preprocess
    if cfg.model.pretrained and cfg.transfer.normalization == "source":
        preprocess, notice = source_preprocess(cfg.model.pretrained, tuple(images.shape[1:]))
        if preprocess is not None:
            return preprocess, notice
    else:
        notice = ""
    try:
        preprocess = fit_preprocess(cfg.preprocess, images, torch.Generator().manual_seed(cfg.train.seed))
    except ValueError as err:  # e.g. dense ZCA asked of images too big for its D x D covariance
        raise ConfigError(f"preprocess.whiten={cfg.preprocess.whiten}: {err}") from None
    return preprocess, notice


def architecture_for(model_cfg):
    """`model_cfg` for published weights: their name is their architecture (model.pretrained=resnet18
    builds a resnet18; the default fastnet is replaced, another zoo name is an error)."""
    import dataclasses
    name = published_name(model_cfg.pretrained) if model_cfg.pretrained else None
    if name is None or model_cfg.name == name:
        return model_cfg
    if model_cfg.name != "fastnet":
        raise ConfigError(f"model.pretrained={name} holds the weights of a {name}; model.name={model_cfg.name} "
                          f"cannot load them: set model.name={name}, or leave model.name out")
    return dataclasses.replace(model_cfg, name=name)
