"""Fixtures of the reliability suite: a small finished run to damage (helpers: reliability_helpers.py)."""
from __future__ import annotations

import io
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # reliability_helpers
from e2e_helpers import run_main, user_environment  # noqa: E402
from reliability_helpers import RUN  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of RUN (never touched: tests copy it with `run_copy`)."""
    root = tmp_path_factory.mktemp("finished")
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        for name, value in user_environment(root).items():
            if name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
                patch.setenv(name, value)
        code = run_main("train", *RUN, "--run-dir", run)
    assert code == 0, err.getvalue()
    return run


@pytest.fixture
def run_copy(finished_run, user) -> Path:
    """A private copy of the finished run, in the user's working folder."""
    copy = user.cwd / "run"
    shutil.copytree(finished_run, copy)
    return copy
