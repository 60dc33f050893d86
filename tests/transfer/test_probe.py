"""Linear probes per stage: one forward pass gives every stage's pooled features; a logistic
regression per stage; `cnntricks probe` prints the table and draws the curve."""
from __future__ import annotations

import json

import numpy as np
import torch

from cnntricks.config import ModelConfig
from cnntricks.nn.models import create_model
from cnntricks.preprocess.normalize import Normalization
from cnntricks.transfer.probe import fit_linear, stage_features, stages_bottom_up


def test_every_stage_is_pooled_to_its_width_in_one_pass():
    model = create_model(ModelConfig(width=4, depth=3), 1, 3, (16, 16))
    images = torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8)
    features = stage_features(model, Normalization([0.5], [0.25]), images, torch.device("cpu"), batch_size=4)
    assert [f.shape for f in features] == [(10, 4), (10, 8), (10, 16)]
    assert len(stages_bottom_up(model)) == 3 and model.training  # train mode restored


def test_a_linear_probe_finds_a_linearly_separable_signal_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    signal = np.eye(3)[y] * 3 + rng.normal(size=(600, 3))
    noise = rng.normal(size=(600, 3))
    assert fit_linear(signal[:400], y[:400], signal[400:], y[400:])[1] > 0.9
    assert fit_linear(noise[:400], y[:400], noise[400:], y[400:])[1] < 0.5


def test_probe_from_the_command_line(user):
    train = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.epochs=1", "optim.batch_size=32",
             "train.threads=1", "--quiet"]
    assert user.run("train", *train, "--run-dir", "source").code == 0
    result = user.run("probe", "model.pretrained=source", "data.source=digits", "--out", "p.png", "--json")
    assert result.code == 0, result
    rows = json.loads(result.out)
    assert [r["stage"] for r in rows] == [0, 1] and [r["features"] for r in rows] == [8, 16]
    assert all(0.1 < r["test_acc"] <= 1 for r in rows)  # digits: 10 classes, above chance
    assert (user.cwd / "p.png").read_bytes()[:4] == b"\x89PNG"
    result = user.run("probe", "data.source=digits")
    assert result.code == 2 and "model.pretrained" in result.err, result
