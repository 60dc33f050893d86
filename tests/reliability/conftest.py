"""Fixtures of the reliability suite: a small finished run to damage (helpers: reliability_helpers.py)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # reliability_helpers
from e2e_helpers import train_in_background_folder  # noqa: E402
from reliability_helpers import RUN  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of RUN (never touched: tests copy it with `run_copy`)."""
    return train_in_background_folder(tmp_path_factory.mktemp("finished"), *RUN)


@pytest.fixture
def run_copy(finished_run, user) -> Path:
    """A private copy of the finished run, in the user's working folder."""
    copy = user.cwd / "run"
    shutil.copytree(finished_run, copy)
    return copy
