"""Linear probes per stage: which layer's features transfer (Yosinski et al. 2014; seed §4's advice
for small, different data: "train the SVM classifier on activations/features from somewhere
earlier in the network").

`probe(model, preprocess, train, test)` runs the frozen model once over each split, keeps every
stage's output globally average-pooled (one forward pass gives all stages, through hooks), and
fits a multinomial logistic regression (scikit-learn, on standardized features) per stage. The
result is one row per stage, bottom first: the feature size and the train and test accuracy of
its linear classifier; `cnntricks probe` prints it and draws it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnntricks.transfer.strategy import layer_groups

PROBE_IMAGES = 5_000    # training images a probe is fitted on at most (seeded): seconds, not epochs
PROBE_ITERATIONS = 300  # L-BFGS steps of the logistic regression


@dataclass
class StageProbe:
    stage: int           # 0 = the first stage (nearest the image)
    features: int        # pooled feature size
    train_acc: float
    test_acc: float


def stages_bottom_up(model: nn.Module) -> list[nn.Module]:
    return list(reversed(layer_groups(model)[1:]))


@torch.no_grad()
def stage_features(model: nn.Module, preprocess, images: torch.Tensor, device: torch.device,
                   batch_size: int = 512) -> list[np.ndarray]:
    """Every stage's output for uint8 `images`, pooled over space: one (N, C_k) array per stage."""
    stages = stages_bottom_up(model)
    caught: list[torch.Tensor | None] = [None] * len(stages)

    def keeper(index):
        def keep(module, inputs, output):
            caught[index] = (output.float().mean((2, 3)) if output.ndim == 4 else output.float()).cpu()
        return keep
    hooks = [stage.register_forward_hook(keeper(i)) for i, stage in enumerate(stages)]
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in stages]
    try:
        for start in range(0, len(images), batch_size):
            model.forward_features(preprocess(images[start:start + batch_size].to(device)))
            for index, value in enumerate(caught):
                parts[index].append(value)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return [torch.cat(p).numpy() for p in parts]


def fit_linear(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> tuple[float, float]:
    """(train, test) accuracy of a logistic regression on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_ITERATIONS))
    classifier.fit(train_x, train_y)
    return float(classifier.score(train_x, train_y)), float(classifier.score(test_x, test_y))


def probe(model: nn.Module, preprocess, train, test, device: torch.device, seed: int = 0) -> list[StageProbe]:
    """A linear probe per stage of `model` (frozen), fitted on `train` and scored on `test` (uint8 stores)."""
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:PROBE_IMAGES]
    train_features = stage_features(model, preprocess, train.images[chosen], device)
    test_features = stage_features(model, preprocess, test.images, device)
    train_y, test_y = train.labels[chosen].numpy(), test.labels.numpy()
    rows = []
    for stage, (x, x_test) in enumerate(zip(train_features, test_features)):
        train_acc, test_acc = fit_linear(x, train_y, x_test, test_y)
        rows.append(StageProbe(stage, x.shape[1], train_acc, test_acc))
    return rows


def pretrained_model(cfg, splits, device: torch.device):
    """(model with cfg.model.pretrained's weights, the preprocessing its inputs get, what was loaded)
    for the data of `splits`; a run directory as the source brings its own model keys."""
    from cnntricks import config as config_module
    from cnntricks.nn.models import create_model
    from cnntricks.rundir import CONFIG
    from cnntricks.transfer.weights import architecture_for, input_preprocess, load_pretrained
    source = cfg.model.pretrained
    if not source:
        raise config_module.ConfigError("model.pretrained: give the weights to probe (a run directory, a "
                                        ".safetensors file, a .pth/.pt state dict or a published name)")
    model_cfg = architecture_for(cfg.model)
    if (Path(source) / CONFIG).is_file():
        model_cfg = config_module.load(Path(source) / CONFIG).model
    channels, height, width = splits.train.images.shape[1:]
    model = create_model(model_cfg, channels, len(splits.train.classes), (height, width)).to(device)
    loaded = load_pretrained(model, source, cfg.transfer.strict)
    preprocess, notice = input_preprocess(cfg, splits.train.images)
    return model, preprocess, f"{loaded.describe()}; inputs: {notice or 'preprocessing fitted on the training split'}"
