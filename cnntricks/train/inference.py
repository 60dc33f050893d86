"""One inference path: the model for a run, its checkpoint and preprocessing, logits with or
without flip TTA, and the metrics with per-class names.

The training loop evaluates through a `Predictor` over its live model; `cnntricks evaluate` and
`predict`, the benchmarks (and next, ensembles and fine-tuning) build the same `Predictor` from a
run directory with `load_predictor`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cnntricks import config as config_module
from cnntricks.config import Config
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.transfer.strategy import cut_above_stage, parse_strategy
from cnntricks.preprocess.pipeline import Preprocess, load_preprocess, model_input_shape
from cnntricks.rundir import (BEST, CHECKPOINTS, CONFIG, DATA, SNAPSHOTS, DamagedFileError, RunDirectoryError,
                              checkpoint_folders, checkpoint_problem, find_checkpoint, read_json)
from cnntricks.train.checkpoint import load_model_weights
from cnntricks.train.device import autocast, resolve_device, resolve_precision


def device_and_precision(cfg: Config) -> tuple[torch.device, str]:
    """train.device and train.precision for this machine; one it lacks is a configuration error."""
    try:
        device = resolve_device(cfg.train.device)
        return device, resolve_precision(cfg.train.precision, device)
    except RuntimeError as err:  # e.g. train.device=cuda without CUDA, fp16 on a CPU
        raise config_module.ConfigError(str(err)) from None


MIN_CHANNELS_LAST_WIDTH = 8  # torch 2.13's CPU kernels corrupt the heap (the process dies: "free(): invalid
# pointer") on the backward pass of a 1x1 stride-2 convolution with under 8 input channels in channels_last
# (measured: 4 -> 8 channels at 8x8, resnet's shortcut at model.width=4); tiny widths gain nothing from it anyway


def uses_channels_last(cfg: Config) -> bool:
    """channels_last pays off for convolutions only; the MLP's input is flattened anyway; and not at the
    tiny widths where torch's CPU kernels fail (MIN_CHANNELS_LAST_WIDTH)."""
    return cfg.train.channels_last and cfg.model.name != "mlp" and cfg.model.width >= MIN_CHANNELS_LAST_WIDTH


def describe_data(splits) -> dict:
    """What the model is built for: written to data.json, so that predict needs no training data."""
    _, channels, height, width = splits.train.images.shape
    return {"source": splits.source, "classes": splits.train.classes, "channels": channels,
            "height": height, "width": width, "train_counts": splits.train.class_counts().tolist()}


def build_model(cfg: Config, data: dict, device: torch.device, warn_size: bool = False) -> torch.nn.Module:
    """The model for `data` (see describe_data), on `device`, in the memory format training uses."""
    with warnings.catch_warnings():
        if not warn_size:  # said once, when training starts; not again at evaluation
            warnings.simplefilter("ignore", ImageSizeWarning)
        channels, height, width = model_input_shape(cfg.preprocess, (data["channels"], data["height"], data["width"]))
        model = create_model(cfg.model, channels, len(data["classes"]), (height, width))
    if cfg.model.pretrained and (stage := parse_strategy(cfg.transfer.strategy)[1]) is not None:
        cut_above_stage(model, stage, (channels, height, width))  # linear@stageK: the head reads stage K
    model = model.to(device)
    if uses_channels_last(cfg):
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, normalize, *,
                   device: torch.device, precision: str = "fp32", tta: bool = False,
                   batch_size: int = 1024, channels_last: bool = False) -> torch.Tensor:
    """float32 logits (N, classes) on the CPU; `tta` averages the image and its mirror."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(batch).float()
            if tta:
                logits = (logits + model(batch.flip(-1)).float()) / 2
        outputs.append(logits.cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


MANY_SHOT, FEW_SHOT = 100, 20  # training images of a class: many-shot above 100, few-shot under 20 (Liu et al. 2019)


def metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Loss, accuracy, the figures that do not hide the rare classes (balanced accuracy: the mean
    per-class recall over the classes present; macro F1 over the classes present or predicted, as
    scikit-learn computes both), per-class recall ("acc"), precision and F1, and the confusion matrix."""
    if len(labels) == 0:
        return {"loss": None, "acc": None, "balanced_acc": None, "macro_f1": None, "per_class": [], "confusion": []}
    predictions = logits.argmax(1)
    correct = predictions == labels
    cells = torch.bincount(labels.long().cpu() * num_classes + predictions.cpu(), minlength=num_classes ** 2)
    confusion = cells.view(num_classes, num_classes).double()
    hits, true, predicted = confusion.diagonal(), confusion.sum(1), confusion.sum(0)
    per_class, recalls, f1s = [], [], []
    for c in range(num_classes):
        recall = float(hits[c] / true[c]) if true[c] else None
        precision = float(hits[c] / predicted[c]) if predicted[c] else None
        f1 = 2 * float(hits[c]) / float(true[c] + predicted[c]) if true[c] + predicted[c] else None
        per_class.append({"class": c, "count": int(true[c]), "acc": recall, "precision": precision, "f1": f1})
        recalls += [recall] if recall is not None else []
        f1s += [f1] if f1 is not None else []
    return {"loss": float(F.cross_entropy(logits, labels)), "acc": float(correct.float().mean()),
            "balanced_acc": sum(recalls) / len(recalls), "macro_f1": sum(f1s) / len(f1s),
            "per_class": per_class,
            "confusion": cells.view(num_classes, num_classes).tolist()}  # rows: true, columns: predicted


def shot_accuracy(per_class: list[dict], train_counts: list[int]) -> dict:
    """Mean recall of the many-shot (over MANY_SHOT training images), medium-shot and few-shot (under
    FEW_SHOT) classes, as the long-tail papers report it; a group without classes is None."""
    groups = {"many": [], "medium": [], "few": []}
    for row, count in zip(per_class, train_counts):
        if row["acc"] is not None and count:
            groups["many" if count > MANY_SHOT else "few" if count < FEW_SHOT else "medium"].append(row["acc"])
    return {name: sum(accs) / len(accs) if accs else None for name, accs in groups.items()}


@dataclass
class Predictor:
    """A model with its preprocessing and the run's inference settings."""
    model: torch.nn.Module
    preprocess: Preprocess
    classes: list[str]
    device: torch.device
    precision: str = "fp32"
    tta: bool = False
    batch_size: int = 1024
    channels_last: bool = False

    @classmethod
    def for_config(cls, cfg: Config, model, preprocess, classes, device, precision) -> Predictor:
        return cls(model, preprocess, list(classes), device, precision, cfg.train.tta,
                   cfg.train.eval_batch_size, uses_channels_last(cfg))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, images, self.preprocess, device=self.device, precision=self.precision,
                              tta=self.tta, batch_size=self.batch_size, channels_last=self.channels_last)

    def batches(self, images: torch.Tensor):
        """The model's inputs: `images` (uint8) preprocessed on the device, batch_size at a time."""
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start:start + self.batch_size].to(self.device))
            yield batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, F) float32 penultimate features as the model's head reads them (with TTA the mean of the
        image's and its mirror's: the head is linear, so the logits are the head of that mean)."""
        model, parts = self.model, []
        was_training = model.training
        model.eval()
        for batch in self.batches(images):
            with autocast(self.device, self.precision):
                found = model.forward_features(batch).float()
                if self.tta:
                    found = (found + model.forward_features(batch.flip(-1)).float()) / 2
            parts.append(found.cpu())
        model.train(was_training)
        return torch.cat(parts)

    def evaluate(self, store, keep_logits: bool = False) -> dict:
        """{"loss", "acc", "per_class" (with "name"), "confusion"} on a uint8 store (+ "logits")."""
        logits = self.logits(store.images)
        result = metrics(logits, store.labels, len(self.classes))
        for row in result["per_class"]:
            row["name"] = self.classes[row["class"]]
        return {**result, "logits": logits} if keep_logits else result


def chosen_checkpoint(run_dir: Path, checkpoint: str | Path) -> Path:
    """The checkpoint folder `checkpoint` names, with intact weights: a path inside the run
    ("checkpoints/epoch-0005", "snapshots/cycle-02", "best"), a folder name under checkpoints/, or a path."""
    name = Path(checkpoint)
    candidates = [name] if name.is_absolute() else [run_dir / name, run_dir / CHECKPOINTS / name, name]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        kept = [f"{CHECKPOINTS}/{f.name}" for f in reversed(checkpoint_folders(run_dir))]
        kept += [f"{SNAPSHOTS}/{f.name}" for f in sorted((run_dir / SNAPSHOTS).glob("cycle-*"))]
        kept += [BEST] if (run_dir / BEST).is_dir() else []
        raise RunDirectoryError(f"{run_dir} has no checkpoint {checkpoint} (kept: {', '.join(kept) or 'none'})")
    problem = checkpoint_problem(folder, weights_only=True)  # predicting needs the weights only
    if problem is not None:
        raise DamagedFileError(f"checkpoint {folder} is damaged ({problem}); choose another")
    return folder


@dataclass
class LoadedRun:
    cfg: Config
    data: dict       # data.json
    checkpoint: Path
    predictor: Predictor


def load_predictor(run_dir: str | Path, overrides: list[str] = (), checkpoint: str | Path | None = None) -> LoadedRun:
    """A trained run's newest checkpoint (or `checkpoint`: see `chosen_checkpoint`), ready to predict (`overrides` may change data or train keys)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no config.yaml); "
                                f"runs are written by cnntricks train, in runs/ by default")
    if checkpoint is None and (run_dir / BEST).is_dir() and config_module.load(run_dir / CONFIG).train.keep == "best":
        checkpoint = BEST  # the run ended with the best epoch's weights: they are the run's model
    if checkpoint == "last":
        checkpoint = None
    last = chosen_checkpoint(run_dir, checkpoint) if checkpoint is not None else find_checkpoint(run_dir)
    if last is None:  # find_checkpoint: the newest intact one, saying which damaged ones it passed over
        raise RunDirectoryError(f"{run_dir} has no checkpoint yet; train it first "
                                f"(cnntricks train --resume {run_dir})")
    cfg = config_module.load(run_dir / CONFIG, list(overrides))
    device, precision = device_and_precision(cfg)
    data = read_json(run_dir / DATA)
    if data is None:
        raise RunDirectoryError(f"{run_dir} has no data.json (the classes and image size the model was built for); "
                                f"it was not written by cnntricks train, or was damaged")
    model = build_model(cfg, data, device)
    load_model_weights(model, last)
    predictor = Predictor.for_config(cfg, model, load_preprocess(run_dir), data["classes"], device, precision)
    return LoadedRun(cfg, data, last, predictor)
