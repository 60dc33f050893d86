"""Published ImageNet weights by name (`model.pretrained=resnet18`): torchvision's files for
torchvision's ResNets (nn/imagenet_resnets.py's resnet18/34/50 have their state-dict keys), downloaded once.

`fetch(name)` returns the file in the cache, $CNNTRICKS_CACHE/weights, else
$XDG_CACHE_HOME/cnntricks/weights, else ~/.cache/cnntricks/weights. A file is trusted when its
SHA-256 starts with the prefix in its published name ("resnet18-f37072fd.pth": torch.hub's rule),
checked before a download becomes visible (data/download.py) and once per process for a file
already there. Without network the error names the URL and the exact path to copy the file to.
$CNNTRICKS_WEIGHTS_URL replaces the base URL (a mirror; the tests' local server).

The table is checked against the real torchvision by tests/nn/test_torchvision_resnets.py
(tests/transfer/torchvision_resnets.json, written by scripts/torchvision_manifest.py). All three are
IMAGENET1K_V1, He et al.'s recipe: resnet50's newer V2 was trained with label smoothing, mixup and
cutmix, which make features that transfer worse (Kornblith et al. 2021).
"""
from __future__ import annotations

import hashlib
import http.client
import os
from dataclasses import dataclass
from pathlib import Path

from cnntricks.config import ConfigError, DataConfig
from cnntricks.data.cache import cache_root
from cnntricks.data.download import download
from cnntricks.data.errors import DataError
from cnntricks.registry import closest

BASE_URL = "https://download.pytorch.org/models/"
BASE_URL_VARIABLE = "CNNTRICKS_WEIGHTS_URL"
CACHE_VARIABLE = "CNNTRICKS_CACHE"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet transforms, [0, 1] pixel units
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Published:
    """A published weights file: its name on the server and the normalization it was trained with."""
    file: str                       # "resnet18-f37072fd.pth": the SHA-256 prefix after the last dash
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3

    @property
    def sha256_prefix(self) -> str:
        return self.file.rsplit("-", 1)[1].split(".")[0]

    @property
    def url(self) -> str:
        return (os.environ.get(BASE_URL_VARIABLE) or BASE_URL).rstrip("/") + "/" + self.file


PUBLISHED = {  # model.pretrained name -> file (torchvision's ResNet*_Weights.IMAGENET1K_V1)
    "resnet18": Published("resnet18-f37072fd.pth"),
    "resnet34": Published("resnet34-b627a593.pth"),
    "resnet50": Published("resnet50-0676ba61.pth"),
}
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of cached files whose hash was checked


class ChecksumError(DataError):
    """A downloaded file whose SHA-256 does not start with the prefix in its published name."""


def weights_cache() -> Path:
    """$CNNTRICKS_CACHE/weights, else the data cache's root (data/cache.py) / weights."""
    root = os.environ.get(CACHE_VARIABLE)
    return (Path(root).expanduser() if root else cache_root(DataConfig())) / "weights"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()  # a file replaced since it was checked is checked again
    return str(path), stat.st_size, stat.st_mtime_ns


def fetch(name: str, cache_dir: str | Path | None = None) -> Path:
    """The published weights `name` (a key of PUBLISHED) in the cache, downloaded when missing."""
    if name not in PUBLISHED:
        raise ConfigError(f"model.pretrained: no published weights are named '{name}'{closest(name, PUBLISHED)}; "
                          f"known: {', '.join(PUBLISHED)}")
    entry = PUBLISHED[name]
    path = Path(cache_dir).expanduser() if cache_dir is not None else weights_cache()
    path = path / entry.file
    if path.is_file():
        if (key := _identity(path)) not in _VERIFIED:
            if not sha256_of(path).startswith(entry.sha256_prefix):
                raise DataError(f"model.pretrained={name}: {path} is not the published file (its SHA-256 does "
                                f"not start with {entry.sha256_prefix}); delete it to download {entry.url} again")
            _VERIFIED.add(key)
        return path

    def check(temporary: Path) -> None:
        got = sha256_of(temporary)
        if not got.startswith(entry.sha256_prefix):
            raise ChecksumError(f"model.pretrained={name}: {entry.url} sent a file whose SHA-256 is {got}, not "
                                f"one starting with {entry.sha256_prefix} (the hash in its name); it was not kept. "
                                f"A proxy or a mirror that serves another file?")

    try:
        download(entry.url, path, check)
    except ChecksumError:
        raise
    except (DataError, http.client.HTTPException) as err:  # HTTPException: a connection cut mid-file
        raise DataError(f"model.pretrained={name}: {err}. If this machine cannot download it, download "
                        f"{entry.url} elsewhere and copy it to {path}") from None
    _VERIFIED.add(_identity(path))
    return path
