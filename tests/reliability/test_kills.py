"""SIGKILL while the report is written (the moments tests/e2e/test_cli_kill_resume.py does not cover:
it kills training, resumes and fix-mode restarts): nothing outside report/ changes, the next run
of the report completes, and no temporary file of the killed process survives it."""
from __future__ import annotations

import random
import signal
import time

import pytest
from reliability_helpers import no_traceback, snapshot

DELAYS = [2.0] + [pytest.param(d, marks=pytest.mark.slow) for d in
                  sorted(round(random.Random(12).uniform(0.8, 5.0), 2) for _ in range(5))]


def temporary_files(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("delay", DELAYS)
def test_a_kill_while_the_report_is_written_loses_nothing(user, run_copy, delay):
    outside = {k: v for k, v in snapshot(run_copy).items() if not k.startswith("report")}
    process = user.start("doctor", run_copy, "--report")
    time.sleep(delay)
    process.kill(signal.SIGKILL)
    process.finish()
    assert {k: v for k, v in snapshot(run_copy).items() if not k.startswith("report")} == outside
    result = user.run("doctor", run_copy, "--report")
    assert result.code == 0, result
    no_traceback(result)
    assert (run_copy / "report" / "index.html").read_text().rstrip().endswith("</html>")
    assert not temporary_files(run_copy), temporary_files(run_copy)
