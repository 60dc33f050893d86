"""model.pretrained=resnet18: published weights downloaded once into the cache, trusted only when
their SHA-256 starts with the prefix in their name, never unpickled; offline, the error names the URL
and the path to copy the file to. A local HTTP server stands in for download.pytorch.org, serving
files whose names carry their own hash prefix (the table entry is swapped for the test's)."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnntricks.config import ConfigError, ModelConfig
from cnntricks.data.errors import DataError
from cnntricks.nn.models import create_model
from cnntricks.rundir import DamagedFileError
from cnntricks.transfer import hub, load_pretrained, read_weights, source_preprocess
from cnntricks.transfer.weights import weights_file

EXIT_DATA = 3  # cnntricks/cli.py


class Server:
    """A folder served over HTTP on localhost in a thread; `requests` lists the paths asked for."""

    def __init__(self, folder):
        self.folder, self.requests = folder, []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    (tmp_path / "server" / "models").mkdir(parents=True)
    running = Server(tmp_path / "server")
    monkeypatch.setenv(hub.BASE_URL_VARIABLE, running.url)
    monkeypatch.setenv(hub.CACHE_VARIABLE, str(tmp_path / "cache"))
    yield running
    running.close()


def publish(server, monkeypatch, state, prefix=None, name="resnet18"):
    """Serve `state` (a state dict, or anything torch.save takes) as `name`'s published file, named
    by its SHA-256 prefix as torchvision names its files (or by `prefix`, to fake a mismatch)."""
    staging = server.folder / "staging.pth"
    torch.save(state, staging)
    prefix = prefix or hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    file = f"{name}-{prefix}.pth"
    staging.rename(server.folder / "models" / file)
    monkeypatch.setitem(hub.PUBLISHED, name, hub.Published(file))
    return file


def few_tensors():
    return {"conv1.weight": torch.arange(64 * 3 * 49, dtype=torch.float32).reshape(64, 3, 7, 7),
            "fc.bias": torch.ones(1000)}


def test_a_download_lands_in_the_cache_and_the_next_fetch_does_not_ask_again(server, monkeypatch, tmp_path):
    file = publish(server, monkeypatch, few_tensors())
    path = hub.fetch("resnet18")
    assert path == tmp_path / "cache" / "weights" / file
    assert server.requests == [f"/models/{file}"]
    assert hub.fetch("resnet18") == path and read_weights("resnet18")[0] == path
    assert len(server.requests) == 1
    torch.testing.assert_close(read_weights("resnet18")[1], few_tensors())
    assert [p.name for p in path.parent.iterdir()] == [file]  # no temporary left beside it


def test_the_cache_folder_and_the_base_url(monkeypatch, tmp_path):
    monkeypatch.delenv(hub.CACHE_VARIABLE, raising=False)
    monkeypatch.delenv(hub.BASE_URL_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.weights_cache() == tmp_path / "xdg" / "cnntricks" / "weights"
    monkeypatch.setenv(hub.CACHE_VARIABLE, str(tmp_path / "mine"))
    assert hub.weights_cache() == tmp_path / "mine" / "weights"
    assert hub.PUBLISHED["resnet50"].url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    monkeypatch.setenv(hub.BASE_URL_VARIABLE, "http://mirror.example/w")
    assert hub.PUBLISHED["resnet50"].url == "http://mirror.example/w/resnet50-0676ba61.pth"


def test_a_cache_dir_given_wins(server, monkeypatch, tmp_path):
    file = publish(server, monkeypatch, few_tensors())
    assert hub.fetch("resnet18", cache_dir=tmp_path / "elsewhere") == tmp_path / "elsewhere" / file


def test_a_wrong_checksum_is_an_error_and_leaves_no_file(server, monkeypatch, tmp_path):
    file = publish(server, monkeypatch, few_tensors(), prefix="0badcafe")
    with pytest.raises(DataError) as caught:
        hub.fetch("resnet18")
    message = str(caught.value)
    assert f"{server.url}{file}" in message and "0badcafe" in message and "not kept" in message
    got = hashlib.sha256((server.folder / "models" / file).read_bytes()).hexdigest()
    assert got in message and isinstance(caught.value, hub.ChecksumError)  # what came
    cache = tmp_path / "cache" / "weights"
    assert not cache.exists() or not any(cache.iterdir())  # nothing, not even a temporary


def test_a_cached_file_that_does_not_match_is_named_and_not_used(server, monkeypatch, tmp_path):
    file = publish(server, monkeypatch, few_tensors())
    cached = tmp_path / "cache" / "weights" / file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"something else")
    with pytest.raises(DataError, match=f"{cached}.*not the published file.*delete it"):
        hub.fetch("resnet18")
    assert not server.requests


def test_offline_the_error_names_the_url_and_where_to_put_the_file(monkeypatch, tmp_path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(hub.BASE_URL_VARIABLE, f"http://127.0.0.1:{port}/models")
    monkeypatch.setenv(hub.CACHE_VARIABLE, str(tmp_path / "cache"))
    entry = hub.PUBLISHED["resnet18"]
    with pytest.raises(DataError) as caught:
        weights_file("resnet18")
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/models/{entry.file}" in message
    assert f"copy it to {tmp_path / 'cache' / 'weights' / entry.file}" in message


def test_offline_the_cli_exits_with_the_data_code(user, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(hub.BASE_URL_VARIABLE, f"http://127.0.0.1:{port}/models")
    monkeypatch.delenv(hub.CACHE_VARIABLE, raising=False)  # the user's cache: under tmp_path
    result = user.run("train", "data.source=synthetic", "data.subset=32", "model.name=resnet18",
                      "model.pretrained=resnet18", "train.epochs=1", "--quiet")
    assert result.code == EXIT_DATA, result
    assert "resnet18-f37072fd.pth" in result.err and "copy it to" in result.err


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_published_file_holding_a_pickled_object_is_refused_and_never_unpickled(server, monkeypatch, tmp_path):
    marker = tmp_path / "unpickled"
    publish(server, monkeypatch, {"conv1.weight": torch.zeros(1), "code": Payload(marker)})
    with pytest.raises(DamagedFileError, match="without running code"):
        read_weights("resnet18")
    assert not marker.exists()


def test_a_path_that_exists_wins_over_the_name(server, monkeypatch, tmp_path):
    from cnntricks import config
    from cnntricks.train.resolve import absolute_paths
    publish(server, monkeypatch, few_tensors())
    monkeypatch.chdir(tmp_path)
    cfg = config.load(None, ["model.pretrained=resnet18"])
    assert absolute_paths(cfg).model.pretrained == "resnet18"  # a name stays a name in config.yaml
    save_file({"x": torch.zeros(2)}, tmp_path / "resnet18")
    assert weights_file("resnet18").resolve() == tmp_path / "resnet18" and not server.requests
    assert absolute_paths(cfg).model.pretrained == str(tmp_path / "resnet18")  # a file of that name: a path
    with pytest.raises(ConfigError, match="does not exist"):
        weights_file(tmp_path / "runs" / "resnet18")
    with pytest.raises(ConfigError, match="did you mean 'resnet18'.*resnet18, resnet34, resnet50"):
        weights_file("resnet19")
    with pytest.raises(ConfigError, match="no published weights are named 'resnet19' \\(did you mean 'resnet18'"):
        hub.fetch("resnet19")


@pytest.mark.parametrize("channels,mean", [(3, [0.485, 0.456, 0.406]), (1, [(0.485 + 0.456 + 0.406) / 3])])
def test_the_published_weights_come_with_the_imagenet_normalization(channels, mean):
    preprocess, notice = source_preprocess("resnet18", (channels, 32, 32))
    assert preprocess.normalization.mean == pytest.approx(mean)
    std = [0.229, 0.224, 0.225] if channels == 3 else [(0.229 + 0.224 + 0.225) / 3]
    assert preprocess.normalization.std == pytest.approx(std)
    assert "the ImageNet mean/std of resnet18's published weights" in notice
    assert ("adapted to 1 channel" in notice) == (channels == 1)


# ---- torchvision's keys into the zoo's resnet18 ---------------------------------------------------

def torchvision_like_state(seed=0):
    """A state dict with torchvision's resnet18 keys (1000 classes; tests/nn/test_torchvision_resnets.py
    shows ours are those), every value recognisable."""
    generator = torch.Generator().manual_seed(seed)
    state = create_model(ModelConfig(name="resnet18"), 3, 1000, (32, 32)).state_dict()
    made = {}
    for key, value in state.items():
        noise = torch.randn(value.shape, generator=generator)
        if key.endswith("running_var"):
            noise = 0.5 + noise.abs()
        elif key.endswith(("bn1.weight", "bn2.weight", "downsample.1.weight")):
            noise = 1 + 0.1 * noise
        elif value.ndim > 1:  # conv and linear weights: He's variance
            noise = noise * (2 / value[0].numel()) ** 0.5
        else:  # shifts and running means
            noise = 0.1 * noise
        made[key] = noise if value.is_floating_point() else value
    return made


@pytest.mark.parametrize("channels", [3, 1])
def test_torchvision_keys_load_into_a_resnet18_for_5_classes_with_a_new_head(tmp_path, channels):
    state = torchvision_like_state()
    torch.save(state, tmp_path / "resnet18-tv.pth")
    model = create_model(ModelConfig(name="resnet18"), channels, 5, (32, 32))
    loaded = load_pretrained(model, tmp_path / "resnet18-tv.pth")
    own = model.state_dict()
    assert not loaded.skipped and not any(k.startswith("fc.") for k in loaded.loaded)
    assert len(loaded.loaded) == len(state) - 2
    for key in loaded.loaded:
        want = state[key].sum(1, keepdim=True) if key == "conv1.weight" and channels == 1 else state[key]
        assert torch.equal(own[key], want), key
    assert model.fc.weight.shape == (5, 512) and torch.all(model.fc.bias == 0)
    assert loaded.adapted == (["conv1.weight (3 -> 1 channels)"] if channels == 1 else [])


def test_a_missing_weight_is_still_listed_with_the_head_under_another_name(tmp_path):
    state = torchvision_like_state()
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="layer1.0.conv1.weight: not in the file"):
        load_pretrained(create_model(ModelConfig(name="resnet18"), 3, 5, (32, 32)), tmp_path / "w.pth")


def test_cnntricks_train_fine_tunes_the_published_resnet18(user, server, monkeypatch):
    # the whole path: the name, the download, the ImageNet normalization, the top strategy
    state = torchvision_like_state()
    publish(server, monkeypatch, state)
    result = user.run("train", "data.source=synthetic", "data.subset=64",  # the name gives the architecture
                      "model.pretrained=resnet18", "transfer.strategy=top", "transfer.stages=1",
                      "train.epochs=1", "optim.batch_size=32", "optim.lr=0.01", "train.threads=1", "--run-dir", "tuned",
                      "--quiet")
    assert result.code == 0, result
    assert len(server.requests) == 1
    run = user.cwd / "tuned"
    assert "name: resnet18" in (run / "config.yaml").read_text() and "pretrained: resnet18" in (run / "config.yaml").read_text()
    assert json.loads((run / "preprocess.json").read_text())["mean"] == pytest.approx([0.485, 0.456, 0.406])
    after = load_file(next((run / "checkpoints").glob("epoch-*")) / "model.safetensors")
    assert after["fc.weight"].shape == (4, 512) and set(after) == set(state)  # torchvision's keys, a new head
    frozen = [k for k in state if k.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3."))]
    for key in frozen:  # frozen: weights and batch-norm statistics as published
        assert torch.equal(after[key], state[key]), key
    assert not torch.equal(after["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])  # the top stage trained


def test_published_weights_name_their_architecture():
    from cnntricks.transfer.weights import architecture_for
    assert architecture_for(ModelConfig(pretrained="resnet34")).name == "resnet34"  # the default fastnet replaced
    assert architecture_for(ModelConfig(name="resnet34", pretrained="resnet34")).name == "resnet34"
    assert architecture_for(ModelConfig(name="vgg", pretrained="runs/base")).name == "vgg"  # not a published name
    with pytest.raises(ConfigError, match="model.pretrained=resnet18 holds the weights of a resnet18; model.name=vgg"):
        architecture_for(ModelConfig(name="vgg", pretrained="resnet18"))
