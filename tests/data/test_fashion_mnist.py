import functools
import gzip
import hashlib
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from data_helpers import idx_bytes

from cnntricks.data import DataError, load_splits
from cnntricks.data import fashion_mnist
from cnntricks.data.fashion_mnist import CLASSES, EXPECTED_SHA256, load_fashion_mnist

NAMES = list(EXPECTED_SHA256)


def test_the_installed_dataset_loads_with_the_default_split(data_config):
    # The Debian package dataset-fashion-mnist is installed wherever the tests run; no skip.
    splits = load_splits(data_config(), seed=0)
    assert splits.source == "fashion-mnist" and splits.classes == CLASSES
    assert splits.train.images.shape == (54000, 1, 28, 28)
    assert splits.val.images.shape == (6000, 1, 28, 28)
    assert splits.test.images.shape == (10000, 1, 28, 28)
    for store in (splits.train, splits.val, splits.test):
        assert store.images.dtype == torch.uint8 and store.labels.dtype == torch.int64
        assert int(store.labels.min()) == 0 and int(store.labels.max()) == 9
    assert splits.val.class_counts().tolist() == [600] * 10  # stratified: 10% of each class
    assert splits.test.class_counts().tolist() == [1000] * 10


def test_a_second_load_reads_the_decoded_cache_quickly(data_config, monkeypatch):
    cfg = data_config()
    load_fashion_mnist(cfg, 0)
    decoded = list((fashion_mnist.cache_root(cfg) / "fashion-mnist" / "decoded").glob("*.npy"))
    assert len(decoded) == 4

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")
    monkeypatch.setattr(fashion_mnist, "read_idx", no_decoding)
    start = time.perf_counter()
    train, test = load_fashion_mnist(cfg, 0)
    assert time.perf_counter() - start < 1.0
    assert len(train) == 60000 and len(test) == 10000


def fake_arrays(n_train=30, n_test=20):
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_fake_files(folder, compress):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = fake_arrays()
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (name + ".gz" if compress else name)).write_bytes(gzip.compress(data) if compress else data)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_data_root_with_plain_or_gzip_files(tmp_path, data_config, compress):
    arrays = write_fake_files(tmp_path / "fm", compress)
    train, test = load_fashion_mnist(data_config(root=str(tmp_path / "fm"), download=False), 0)
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert test.labels.tolist() == (np.arange(20) % 10).tolist()


def test_labels_that_do_not_match_the_images_are_an_error(tmp_path, data_config):
    write_fake_files(tmp_path / "fm", compress=False)
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(DataError, match="do not belong together"):
        load_fashion_mnist(data_config(root=str(tmp_path / "fm"), download=False), 0)


def test_missing_files_name_the_package_the_setting_and_the_folders(tmp_path, data_config, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    cfg = data_config(download=False)
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(cfg, 0)
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message and "data.root=" in message
    assert str(tmp_path / "not-installed") in message
    assert str(fashion_mnist.cache_root(cfg) / "fashion-mnist") in message
    assert "train-images-idx3-ubyte" in message and "data.download is false" in message


class CountingHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path/mirror; yields (folder, url)."""
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "mirror"
    folder.mkdir()
    CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/fashion"
    server.shutdown()
    server.server_close()


def serve_fake_dataset(folder, monkeypatch):
    """Gzip made-up IDX files (level 1: another packaging than the checked bytes) and trust their hashes."""
    (folder / "fashion").mkdir()
    arrays = fake_arrays()
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / "fashion" / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
        monkeypatch.setitem(EXPECTED_SHA256, name, hashlib.sha256(data).hexdigest())
    return arrays


def downloads(cfg):
    """The download folder (the cache; a data.root of the user's own never receives downloads)."""
    return fashion_mnist.cache_root(cfg) / "fashion-mnist"


def test_download_verifies_and_installs_the_files(tmp_path, data_config, mirror, monkeypatch):
    folder, url = mirror
    arrays = serve_fake_dataset(folder, monkeypatch)
    monkeypatch.setenv("CNNTRICKS_FASHION_MNIST_URL", url)  # no trailing slash: one is added
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    cfg = data_config()
    train, test = load_fashion_mnist(cfg, 0)
    assert sorted(CountingHandler.requests) == sorted(f"/fashion/{name}.gz" for name in NAMES)
    assert sorted(p.name for p in downloads(cfg).glob("*.gz")) == sorted(f"{name}.gz" for name in NAMES)
    assert torch.equal(test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    load_fashion_mnist(cfg, 0)
    assert len(CountingHandler.requests) == 4, "the second load must use the downloaded files"


def test_default_downloads_go_to_the_cache(data_config, mirror, monkeypatch, tmp_path):
    folder, url = mirror
    serve_fake_dataset(folder, monkeypatch)
    monkeypatch.setenv("CNNTRICKS_FASHION_MNIST_URL", url + "/")
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    cfg = data_config()
    train, _ = load_fashion_mnist(cfg, 0)
    assert len(train) == 30
    assert (fashion_mnist.cache_root(cfg) / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_checksum_mismatch_is_an_error_and_deletes_the_download(tmp_path, data_config, mirror, monkeypatch):
    folder, url = mirror
    serve_fake_dataset(folder, monkeypatch)
    monkeypatch.setitem(EXPECTED_SHA256, "train-labels-idx1-ubyte", "0" * 64)
    monkeypatch.setenv("CNNTRICKS_FASHION_MNIST_URL", url)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    cfg = data_config()
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(cfg, 0)
    message = str(caught.value)
    assert "SHA-256" in message and "0" * 64 in message and "apt-get install dataset-fashion-mnist" in message
    left = sorted(p.name for p in downloads(cfg).iterdir())
    assert left == ["train-images-idx3-ubyte.gz"], "only the verified file may stay; no partial files"


def test_a_failed_download_says_why_and_what_to_do(tmp_path, data_config, mirror, monkeypatch):
    _, url = mirror  # serves nothing: every request is a 404
    monkeypatch.setenv("CNNTRICKS_FASHION_MNIST_URL", url)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", tmp_path / "not-installed")
    cfg = data_config()
    with pytest.raises(DataError) as caught:
        load_fashion_mnist(cfg, 0)
    message = str(caught.value)
    assert "HTTP 404" in message and "apt-get install dataset-fashion-mnist" in message and "data.root=" in message
    assert str(downloads(cfg)) in message and "network access" in message
    assert "data.download=true" not in message, "data.download is already true"
    assert list(downloads(cfg).iterdir()) == []
