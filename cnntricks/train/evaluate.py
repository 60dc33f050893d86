"""Evaluation: logits for a uint8 image store, with optional flip test-time augmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cnntricks.train.device import autocast


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


def metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Loss, accuracy and per-class accuracy of `logits` against int64 `labels`."""
    if len(labels) == 0:
        return {"loss": None, "acc": None, "per_class": [], "confusion": []}
    predictions = logits.argmax(1)
    correct = predictions == labels
    per_class = []
    for c in range(num_classes):
        mask = labels == c
        per_class.append({"class": c, "count": int(mask.sum()),
                          "acc": float(correct[mask].float().mean()) if mask.any() else None})
    cells = torch.bincount(labels.long().cpu() * num_classes + predictions.cpu(), minlength=num_classes ** 2)
    return {"loss": float(F.cross_entropy(logits, labels)), "acc": float(correct.float().mean()),
            "per_class": per_class,
            "confusion": cells.view(num_classes, num_classes).tolist()}  # rows: true, columns: predicted
