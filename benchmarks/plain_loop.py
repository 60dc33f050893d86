"""A plain PyTorch training loop, the kind a user writes without cnntricks, for the planted-fault
benchmark's "foreign loop" arm: the doctor must diagnose runs from their history alone.

It takes the same `key=value` overrides as `cnntricks train` (the subset in DEFAULTS, so each planted
fault means the same thing here) and trains with nothing of cnntricks but the data splits: its own
nn.Sequential models with PyTorch's default init unless model.init says otherwise, torch.optim, a
LambdaLR schedule, flips, fp32. It writes exactly what Lightning's CSVLogger writes
(`metrics.csv`: one row per logging call, the header every key sorted, `step` from 0, `epoch` from 0,
cells of keys not logged in that row empty), with the loss logged on every step (Lightning's
`log_every_n_steps=1`): `train_loss_step` and `lr-SGD` per step; `train_loss_epoch` and
`train_acc_epoch` (over the epoch's augmented batches, as torchmetrics' on_epoch accuracy), then
`val_loss` and `val_acc`, once per epoch. No config, no layer statistics, no events: a loss that
turns NaN is logged as `nan`, and training goes on, as an unguarded loop does.

    python benchmarks/plain_loop.py OUT_DIR optim.lr=10 schedule.warmup_epochs=0 train.epochs=2
"""
from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# The overrides this loop understands, with cnntricks' defaults (config.py) where it has the same knob.
DEFAULTS = {
    "data.source": "fashion-mnist", "data.root": None, "data.subset": None,
    "model.name": "fastnet", "model.width": 16, "model.depth": 3, "model.activation": "relu",
    "model.init": "auto", "model.norm": "batch",
    "optim.name": "sgd", "optim.lr": 0.1, "optim.batch_size": 128, "optim.weight_decay": 5e-4,
    "optim.label_smoothing": 0.1,
    "schedule.name": "cosine", "schedule.warmup_epochs": 1.0,
    "augment.policy": "flip", "preprocess.normalize": "standardize",
    "train.epochs": 12, "train.seed": 0, "train.threads": None,
}
CHOICES = {"model.name": ("fastnet", "mlp"), "model.activation": ("relu", "leaky_relu", "tanh", "sigmoid"),
           "model.init": ("auto", "zeros", "small_normal", "calibrated", "he_normal"), "model.norm": ("batch", "none"),
           "optim.name": ("sgd", "adamw"), "schedule.name": ("cosine", "constant", "plateau"),
           "augment.policy": ("none", "flip", "standard"), "preprocess.normalize": ("standardize", "none")}
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def parse(overrides: list[str] | tuple[str, ...]) -> dict:
    """The recipe: DEFAULTS with `key=value` overrides, each value parsed as the default's type."""
    recipe = dict(DEFAULTS)
    for item in overrides:
        key, _, text = item.partition("=")
        if key not in DEFAULTS:
            raise ValueError(f"plain loop: '{key}' is not a knob it has ({', '.join(DEFAULTS)})")
        default = DEFAULTS[key]
        if text in ("null", "None"):
            value = None
        elif isinstance(default, (int, float)) or key in ("data.subset", "train.threads"):
            value = float(text) if isinstance(default, float) else int(text)
        else:
            value = text
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"plain loop: {key}={value} is not one of {', '.join(CHOICES[key])}")
        recipe[key] = value
    return recipe


def conv_block(inputs: int, outputs: int, recipe: dict, pool: bool) -> list[nn.Module]:
    """conv3x3 [-> pool] -> norm -> activation (FastNet's layout: pooling before the norm)."""
    norm = recipe["model.norm"] == "batch"
    layers = [nn.Conv2d(inputs, outputs, 3, padding=1, bias=not norm)] + ([nn.MaxPool2d(2)] if pool else [])
    return layers + [nn.BatchNorm2d(outputs) if norm else nn.Identity(), ACTIVATIONS[recipe["model.activation"]]()]


def build_model(recipe: dict, channels: int, size: int, classes: int) -> nn.Sequential:
    width, depth = recipe["model.width"], recipe["model.depth"]
    if recipe["model.name"] == "mlp":
        layers, inputs = [nn.Flatten()], channels * size * size
        for _ in range(depth):
            layers += [nn.Linear(inputs, 8 * width), ACTIVATIONS[recipe["model.activation"]]()]
            inputs = 8 * width
        model = nn.Sequential(*layers, nn.Linear(inputs, classes))
    else:
        layers, inputs = conv_block(channels, width, recipe, pool=True), width
        for stage in range(1, depth):
            outputs = width * 2**stage
            layers += conv_block(inputs, outputs, recipe, pool=False) + conv_block(outputs, outputs, recipe, pool=True)
            inputs = outputs
        model = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(inputs, classes))
    initialize(model, recipe["model.init"])
    return model


def initialize(model: nn.Module, scheme: str) -> None:
    """auto: PyTorch's own defaults, as a plain loop has them; otherwise every conv and linear weight."""
    if scheme == "auto":
        return
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            weight = layer.weight
            with torch.no_grad():
                if scheme == "zeros":
                    weight.zero_()
                elif scheme == "small_normal":
                    weight.normal_(0, 0.001)
                elif scheme == "calibrated":
                    weight.normal_(0, 1 / math.sqrt(weight[0].numel()))
                else:
                    nn.init.kaiming_normal_(weight, nonlinearity="relu")
                if layer.bias is not None:
                    layer.bias.zero_()


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up from 0, then cosine to 0 or constant (plateau: constant, divided on plateaus)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return 1.0


class CsvLogger:
    """Lightning's CSVLogger format: rows of whatever was logged, the header every key sorted."""

    def __init__(self, path: Path):
        self.path, self.rows = path, []

    def log(self, metrics: dict, step: int, epoch: int) -> None:
        self.rows.append({**metrics, "epoch": epoch, "step": step})

    def save(self) -> None:
        keys = sorted(set().union(*self.rows))
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + 1000]) for i in range(0, len(images), 1000)])
    model.train()
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def train(overrides: list[str] | tuple[str, ...], out_dir: str | Path) -> dict:
    """Train the recipe, write out_dir/metrics.csv; return the test accuracy, planned steps and seconds."""
    from cnntricks.config import DataConfig  # the data splits only: the same images as the cnntricks arm
    from cnntricks.data import load_splits

    recipe = parse(overrides)
    if recipe["train.threads"]:
        torch.set_num_threads(recipe["train.threads"])
    seed = recipe["train.seed"]
    torch.manual_seed(seed)
    splits = load_splits(DataConfig(source=recipe["data.source"], root=recipe["data.root"],
                                    subset=recipe["data.subset"]), seed)
    x_train = splits.train.images.float() / 255  # (N, C, H, W)
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)

    def prepare(images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        return x if recipe["preprocess.normalize"] == "none" else (x / 255 - mean) / std

    x_train, y_train = prepare(splits.train.images), splits.train.labels
    x_val, x_test = prepare(splits.val.images), prepare(splits.test.images)
    model = build_model(recipe, x_train.shape[1], x_train.shape[-1], len(splits.train.classes))
    lr, decay = recipe["optim.lr"], recipe["optim.weight_decay"]
    optimizer = (torch.optim.SGD(model.parameters(), lr, momentum=0.9, nesterov=True, weight_decay=decay)
                 if recipe["optim.name"] == "sgd" else torch.optim.AdamW(model.parameters(), lr, weight_decay=decay))
    batch = min(recipe["optim.batch_size"], len(x_train))
    per_epoch = len(x_train) // batch
    total, warmup = recipe["train.epochs"] * per_epoch, round(recipe["schedule.warmup_epochs"] * per_epoch)
    divisor, best_val, waited = 1.0, -1.0, 0  # plateau: the seed's divide-by-2 after 2 epochs without a new best
    logger, step, started = CsvLogger(Path(out_dir) / "metrics.csv"), 0, time.perf_counter()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for epoch in range(recipe["train.epochs"]):
        order = torch.randperm(len(x_train))
        losses, correct = [], 0
        for index in order[:per_epoch * batch].view(per_epoch, batch):
            x, y = x_train[index], y_train[index]
            if recipe["augment.policy"] != "none":
                x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(-1), x)
            if recipe["augment.policy"] == "standard":  # random crop after zero padding by 2
                dx, dy = torch.randint(0, 5, (2,)).tolist()
                x = F.pad(x, (2, 2, 2, 2))[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(step, total, warmup, recipe["schedule.name"]) / divisor
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe["optim.label_smoothing"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            correct += (logits.argmax(1) == y).sum().item()
            logger.log({"train_loss_step": losses[-1], "lr-SGD": optimizer.param_groups[0]["lr"]}, step, epoch)
            step += 1
        logger.log({"train_loss_epoch": sum(losses) / len(losses), "train_acc_epoch": correct / (per_epoch * batch)},
                   step - 1, epoch)
        val_loss, val_acc = evaluate(model, x_val, splits.val.labels)
        logger.log({"val_loss": val_loss, "val_acc": val_acc}, step - 1, epoch)
        if recipe["schedule.name"] == "plateau":
            best_val, waited = (val_acc, 0) if val_acc > best_val else (best_val, waited + 1)
            if waited >= 2:
                divisor, waited = divisor * 2, 0
    seconds = time.perf_counter() - started
    logger.save()
    return {"test_acc": evaluate(model, x_test, splits.test.labels)[1], "planned_steps": total, "seconds": seconds}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    print(train(sys.argv[2:], sys.argv[1]))
