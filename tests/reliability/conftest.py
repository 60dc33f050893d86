"""Fixtures of the reliability suite: a small finished run to damage, and what every case asserts.

Every case checks the same promise (README, "Reliability"): the documented exit code, a message
that names the problem, no traceback, and nothing already written lost or changed.
"""
from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from e2e_helpers import SMALL, run_main, user_environment

# Three epochs, a checkpoint after each: the two newest (epoch-0002, epoch-0003) are kept.
RUN = [*SMALL[:-1], "train.epochs=3", "--quiet"]


def no_traceback(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the lock file aside: it holds the pid of whoever held it last)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


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
