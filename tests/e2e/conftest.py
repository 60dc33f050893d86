"""Fixtures of the end-to-end tests: a user at a shell whose every file lands in tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e_helpers import User

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def user(tmp_path, monkeypatch, capsys) -> User:
    """Runs the CLI in tmp_path/work with HOME, XDG_CACHE_HOME and MPLCONFIGDIR under tmp_path,
    in this process (`user.run`) and in subprocesses (`user.spawn`, `user.start`)."""
    person = User(tmp_path, capsys)
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
        monkeypatch.setenv(name, person.env[name])
    monkeypatch.chdir(person.cwd)
    return person


@pytest.fixture(autouse=True)
def no_runs_outside_tmp():
    """A command that ignored the working directory would leave runs/ in the repository or here."""
    places = {REPOSITORY / "runs", Path(os.getcwd()) / "runs"}
    before = {place: place.exists() for place in places}
    yield
    after = {place: place.exists() for place in places}
    assert after == before, f"a test wrote a run directory outside tmp_path: {after}"
