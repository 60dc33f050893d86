import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).with_name("e2e")))  # e2e_helpers: for tests/e2e and tests/reliability
from e2e_helpers import User  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Test models are tiny; on a shared 2-core machine torch's OpenMP threads wait on each other
    # (measured: a resnet step took 1.1 s with 2 threads under load, 5 ms with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def user(tmp_path, monkeypatch, capsys) -> User:
    """Runs the CLI in tmp_path/work with HOME, XDG_CACHE_HOME and MPLCONFIGDIR under tmp_path,
    in this process (`user.run`) and in subprocesses (`user.spawn`, `user.start`)."""
    person = User(tmp_path, capsys)
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
        monkeypatch.setenv(name, person.env[name])
    monkeypatch.chdir(person.cwd)
    return person
