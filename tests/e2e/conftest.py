"""Fixtures of the end-to-end tests: the `user` (tests/conftest.py), and no run outside tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_runs_outside_tmp():
    """A command that ignored the working directory would leave runs/ in the repository or here."""
    places = {REPOSITORY / "runs", Path(os.getcwd()) / "runs"}
    before = {place: place.exists() for place in places}
    yield
    after = {place: place.exists() for place in places}
    assert after == before, f"a test wrote a run directory outside tmp_path: {after}"
