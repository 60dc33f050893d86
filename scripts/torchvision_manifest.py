"""Write tests/transfer/torchvision_resnets.json: what the real torchvision says our resnet18/34/50
must match (tests/nn/test_torchvision_resnets.py reads it; torchvision is not a dependency, see
DESIGN.md, so the tests cannot ask it themselves).

For each architecture: the state-dict keys and shapes in order, the published ImageNet weights
(url, file name, the SHA-256 prefix in that name, which torch.hub checks), the transforms' mean and
std, and the logits of the model in evaluation mode with every weight set by
`deterministic_state` for the input `check_input()`: our forward pass must give the same numbers.
No weights are stored: both sides rebuild the same deterministic ones (integer arithmetic, no
random generator, so any torch version makes the same tensors).

Run it with a Python that has torchvision, outside the repository's environment:

    python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tvenv/bin/python scripts/torchvision_manifest.py

The functions above `main` import nothing but torch, so the test imports them from this file.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import torch

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "transfer" / "torchvision_resnets.json"
ENUMS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights"}
# IMAGENET1K_V1 for all three (He et al.'s recipe; resnet50's DEFAULT is V2, trained with label
# smoothing, mixup and cutmix, whose features transfer worse: Kornblith et al. 2021).
WEIGHTS = "IMAGENET1K_V1"
CHECK_SHAPE = (2, 3, 64, 64)        # (N, C, H, W) of the input of the numerical check
CHECK_COLUMNS = range(0, 1000, 50)  # the logits kept per image (20 of 1000 classes)


def deterministic_values(key: str, count: int) -> torch.Tensor:
    """`count` float64 values in [-1, 1] that depend only on `key`: integer arithmetic, exact anywhere."""
    offset = zlib.crc32(key.encode())
    return ((torch.arange(count, dtype=torch.int64) * 7919 + offset) % 2001 - 1000).double() / 1000


def deterministic_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the keys and shapes of `state`, every float tensor set from its key: conv
    and linear weights uniform with He's variance 2 / fan_in, norm scales near 1, shifts and
    running means near 0, running variances in [0.5, 1.5]; counters as they are."""
    made = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            made[key] = tensor.clone()
            continue
        u = deterministic_values(key, tensor.numel()).reshape(tensor.shape)
        if tensor.ndim > 1:  # conv (out, in, kH, kW) or linear (out, in): uniform(-a, a) has variance a²/3
            value = u * (6.0 / (tensor[0].numel())) ** 0.5
        elif key.endswith("running_var"):
            value = 1.0 + 0.5 * u
        elif key.endswith("weight"):  # a norm's scale
            value = 1.0 + 0.2 * u
        else:  # biases, running means
            value = 0.1 * u
        made[key] = value.to(tensor.dtype)
    return made


def check_input() -> torch.Tensor:
    """The numerical check's images, (2, 3, 64, 64) in [-1, 1]."""
    return deterministic_values("input", torch.Size(CHECK_SHAPE).numel()).reshape(CHECK_SHAPE).float()


@torch.no_grad()
def check_logits(model: torch.nn.Module) -> list[list[float]]:
    """The kept logits of `model` (eval mode, weights from `deterministic_state`) for `check_input()`."""
    model.load_state_dict(deterministic_state(model.state_dict()))
    logits = model.eval()(check_input())
    return [[round(float(logits[n, c]), 6) for c in CHECK_COLUMNS] for n in range(len(logits))]


def describe(name: str) -> dict:
    import torchvision.models as models
    weights = getattr(getattr(models, ENUMS[name]), WEIGHTS)
    model = getattr(models, name)()  # 1000 classes, torchvision's defaults
    file = weights.url.rsplit("/", 1)[1]  # "resnet18-f37072fd.pth": torch.hub's hash prefix after the dash
    transforms = weights.transforms()
    return {
        "weights": f"{ENUMS[name]}.{WEIGHTS}",
        "url": weights.url,
        "file": file,
        "sha256_prefix": file.rsplit("-", 1)[1].split(".")[0],
        "mean": list(transforms.mean),
        "std": list(transforms.std),
        "resize": list(transforms.resize_size),
        "crop": list(transforms.crop_size),
        "acc@1": weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
        "num_params": sum(p.numel() for p in model.parameters()),
        "state_dict": {key: list(tensor.shape) for key, tensor in model.state_dict().items()},  # in order
        "check": {"input": list(CHECK_SHAPE), "columns": [CHECK_COLUMNS.start, CHECK_COLUMNS.stop, CHECK_COLUMNS.step],
                  "logits": check_logits(model)},
    }


def main() -> None:
    import torchvision
    manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "made_by": "scripts/torchvision_manifest.py",
                "models": {name: describe(name) for name in ENUMS}}
    text = json.dumps(manifest, indent=1)
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m[0])), text)  # a list of numbers on one line
    MANIFEST.write_text(text + "\n")
    print(f"wrote {MANIFEST} ({MANIFEST.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
