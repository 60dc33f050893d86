"""model.pretrained: weights from a run directory, a .safetensors file or a .pth state dict; the head
stays new; channels adapted; mismatches listed (strict) or skipped (not); nothing ever unpickled."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from cnntricks.config import ConfigError, ModelConfig
from cnntricks.nn.models import create_model
from cnntricks.rundir import DamagedFileError
from cnntricks.transfer import load_pretrained, read_weights


def model(channels=3, classes=4, **keys):
    torch.manual_seed(len(keys) + channels + classes)
    return create_model(ModelConfig(**{"width": 8, "depth": 2, **keys}), channels, classes, (16, 16))


def trained_like(net):
    """The net's weights, made recognisable (so a copy can be told from an initialization)."""
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.randn_like(value))
    return {k: v.clone() for k, v in net.state_dict().items()}


def assert_loaded(net, state, except_head=True):
    for name, value in net.state_dict().items():
        if name.startswith("head."):
            assert not torch.equal(value, state[name]) if value.shape == state[name].shape else True
        else:
            assert torch.equal(value, state[name]), name


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt"])
def test_every_weight_but_the_head_is_copied_from_a_file(tmp_path, suffix):
    state = trained_like(model(classes=10))
    path = tmp_path / f"w{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    target = model(classes=4)  # new classes: a new head
    loaded = load_pretrained(target, path)
    assert_loaded(target, state)
    assert loaded.source == path and not loaded.skipped and all(not n.startswith("head.") for n in loaded.loaded)
    assert len(loaded.loaded) == len([k for k in state if not k.startswith("head.")])


def test_a_wrapped_training_checkpoint_and_a_dataparallel_prefix(tmp_path):
    state = trained_like(model())
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "c.pth")
    target = model()
    load_pretrained(target, tmp_path / "c.pth")
    assert_loaded(target, state)


def test_a_run_directory_gives_its_newest_intact_checkpoint(user):
    result = user.run("train", "data.source=synthetic", "model.width=8", "model.depth=2", "train.epochs=1",
                      "optim.batch_size=32", "train.threads=1", "--run-dir", "source", "--quiet")
    assert result.code == 0, result
    path, state = read_weights(user.cwd / "source")
    assert path == user.cwd / "source" / "checkpoints" / "epoch-0001" / "model.safetensors"
    result = user.run("train", "data.source=synthetic", "model.width=8", "model.depth=2", "train.epochs=1",
                      "optim.batch_size=32", "train.threads=1", "data.channels=1", "model.pretrained=source",
                      "--run-dir", "target")
    assert result.code == 0, result
    assert "model.pretrained:" in result.out and "adapted to the image channels" in result.out, result
    events = [json.loads(line) for line in (user.cwd / "target" / "history.jsonl").read_text().splitlines()
              if '"pretrained"' in line]
    assert len(events) == 1 and "tensors from" in events[0]["message"]
    config = (user.cwd / "target" / "config.yaml").read_text()
    assert f"pretrained: {user.cwd / 'source'}" in config  # absolute: resumable from any folder


@pytest.mark.parametrize("source, target", [(3, 1), (1, 3)])
def test_the_first_convolution_is_adapted_to_the_image_channels(tmp_path, source, target):
    state = trained_like(model(channels=source))
    save_file(state, tmp_path / "w.safetensors")
    net = model(channels=target)
    loaded = load_pretrained(net, tmp_path / "w.safetensors")
    assert loaded.adapted == [f"stages.0.0.weight ({source} -> {target} channels)"]
    gray = torch.rand(2, 1, 16, 16)
    conv = net.stages[0][0]
    reference = torch.nn.functional.conv2d(gray.expand(-1, source, -1, -1), state["stages.0.0.weight"], padding=1)
    assert torch.allclose(conv(gray.expand(-1, target, -1, -1)), reference, atol=1e-5)  # same response to gray


def test_a_mismatch_is_listed_and_strict_false_loads_what_fits(tmp_path):
    save_file(trained_like(model(depth=2)), tmp_path / "w.safetensors")
    wider = create_model(ModelConfig(width=16, depth=3), 3, 4, (16, 16))
    with pytest.raises(ConfigError, match=r"do not fit .*stages\.0\.0\.weight: \(8, 3, 3, 3\) in the file, "
                                          r"\(16, 3, 3, 3\) in the model.*transfer.strict=false"):
        load_pretrained(wider, tmp_path / "w.safetensors")
    deeper = create_model(ModelConfig(width=8, depth=3), 3, 4, (16, 16))
    loaded = load_pretrained(deeper, tmp_path / "w.safetensors", strict=False)
    assert loaded.loaded and any("not in the file" in s for s in loaded.skipped)
    assert "skipped" in loaded.describe()


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("content", ["pickled-object", "garbage", "empty", "not-a-dict"])
def test_bad_weights_files_are_refused_and_never_unpickled(tmp_path, content):
    marker = tmp_path / "unpickled"
    path = tmp_path / "w.pth"
    if content == "pickled-object":
        torch.save({"w": torch.zeros(1), "code": Payload(marker)}, path)
    elif content == "garbage":
        path.write_bytes(b"\x80\x04garbage" * 10)
    elif content == "empty":
        path.write_bytes(b"")
    else:
        torch.save([torch.zeros(1)], path)
    with pytest.raises(DamagedFileError, match="model.pretrained"):
        load_pretrained(model(), path)
    assert not marker.exists()
    (tmp_path / "w.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(DamagedFileError):
        load_pretrained(model(), tmp_path / "w.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_a_source_that_is_not_weights_says_what_to_give(tmp_path, where):
    path = tmp_path / "nothing"
    if where == "folder":
        path.mkdir()
    with pytest.raises(ConfigError, match="run directory, a .safetensors file or a .pth/.pt state dict"):
        load_pretrained(model(), path)


def test_the_source_runs_input_normalization_is_used_and_survives_a_resume(user):
    small = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.epochs=1", "optim.batch_size=32",
             "train.threads=1", "--quiet"]
    assert user.run("train", *small, "--run-dir", "source").code == 0
    source = json.loads((user.cwd / "source" / "preprocess.json").read_text())
    assert user.run("train", *small, "data.channels=1", "model.pretrained=source", "--run-dir", "gray").code == 0
    gray = json.loads((user.cwd / "gray" / "preprocess.json").read_text())
    assert gray["mean"] == [pytest.approx(sum(source["mean"]) / 3)] and len(gray["std"]) == 1
    assert user.run("train", *small, "model.pretrained=source", "transfer.normalization=own", "train.seed=5",
                    "--run-dir", "own").code == 0
    (user.cwd / "source" / "preprocess.json").unlink()  # a resume no longer needs the source
    assert user.run("train", "--resume", "gray", "train.epochs=2", "--quiet").code == 0
    assert json.loads((user.cwd / "gray" / "preprocess.json").read_text()) == gray
