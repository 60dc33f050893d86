"""The model tricks (seed §3, §5, §6) and the monitor from the command line, in every model."""
from __future__ import annotations


import pytest
from e2e_helpers import SMALL, read_json

from cnntricks.monitor import read_stats

TRICKS = ["model.activation=rrelu", "model.init=lsuv", "regularize.max_norm=3", "regularize.l1=1e-5",
          "regularize.l1_start=0.5", "regularize.l2=1e-4", "optim.decay=decoupled",
          "model.spatial_dropout=0.1", "model.dropout=0.5", "train.monitor=every:2"]


@pytest.mark.parametrize("model", ["fastnet", "vgg", "resnet", "mlp"])
def test_every_model_trains_with_the_tricks_and_writes_stats(user, model):
    result = user.run("train", *SMALL, f"model.name={model}", *TRICKS, "--run-dir", "run")
    assert result.code == 0, result
    run = user.cwd / "run"
    assert read_json(run / "summary.json")["stop_reason"] == "completed"
    stats = read_stats(run)
    steps = read_json(run / "summary.json")["steps"]
    assert [r["step"] for r in stats] == [1] + list(range(2, steps + 1, 2))
    layers = stats[-1]["layers"]
    assert layers and all(entry["type"] == "RandomizedReLU" and "dead" in entry for entry in layers.values())
    assert all(0 < p["update_ratio"] < 1 for p in stats[-1]["params"].values())


@pytest.mark.parametrize("activation", ["prelu", "maxout", "leaky_relu", "tanh"])
def test_activations_and_inits_by_name(user, activation):
    result = user.run("train", *SMALL, f"model.activation={activation}", "model.init=orthogonal",
                      "model.negative_slope=0.18", "model.maxout_pieces=3", "train.monitor=off", "--run-dir", "run")
    assert result.code == 0, result
    assert not (user.cwd / "run" / "stats.jsonl").exists()


def test_a_bad_model_trick_value_is_a_configuration_error(user):
    result = user.run("train", *SMALL, "model.init=he")
    assert result.code == 2 and "he_normal" in result.err  # did you mean
    result = user.run("train", *SMALL, "train.monitor=every:0")
    assert result.code == 2 and "every:N" in result.err


def test_a_resnet_of_width_4_trains(user):
    """torch's CPU kernels corrupt the heap on a 1x1 stride-2 convolution's backward with 4 input channels in
    channels_last (the process died); such widths train in the default memory format."""
    result = user.run("train", *SMALL, "model.name=resnet", "model.width=4", "data.source=digits", "--run-dir", "w4",
                      "--quiet")
    assert result.code == 0, result
