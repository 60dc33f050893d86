"""The report page in a real browser: it renders, logs nothing to the console, and shows the
findings before the figures. scripts/setup.sh installs chromium; without it the test is skipped."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from cnntricks import config
from cnntricks.doctor import Finding
from cnntricks.report import write_report
from cnntricks.report.html import SEVERITY_COLORS
from cnntricks.session import train

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH: scripts/setup.sh installs it "
                                "(apt-get install chromium)")
FINDINGS = [Finding("lr_too_high", "error", "The loss jumps after warm-up: the learning rate is too high",
                    "loss rose from 1.2 to 2.9 between steps 8 and 12", "seed §7, Fig. 1", "lower the LR",
                    {"optim.lr": 0.01}, "loss.png", 12, 2),
            Finding("overfitting", "warning", "Validation accuracy stalls below train",
                    "train 90% vs validation 70%", "seed §7, Fig. 3", "regularize more", {"model.dropout": 0.5},
                    "accuracy.png")]


def browse(page, tmp_path, *action):
    """Run headless chromium on `page` with console logging on stderr; returns the finished process."""
    return subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}", *action, page.as_uri()],
        capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = tmp_path_factory.mktemp("chromium") / "run"
    train(config.load(None, ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1",
                           "optim.batch_size=32", "train.epochs=2", "train.monitor=every:2"]), run, progress=False,
          report=False)
    return write_report(run, findings=FINDINGS)


def console_lines(stderr: str) -> list[str]:
    # chromium logs every console message, errors and CSP violations included, as "...:CONSOLE..."
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_dom_has_the_findings_before_the_figures_and_no_console_message(report, tmp_path):
    shown = browse(report, tmp_path, "--dump-dom")
    assert console_lines(shown.stderr) == []
    dom = shown.stdout
    positions = [dom.index(f.title) for f in FINDINGS]
    assert positions == sorted(positions) and positions[-1] < dom.index('id="figures"')
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', dom)) >= 6  # history, stats and filters


def test_the_screenshot_shows_the_findings_first(report, tmp_path):
    screenshot = tmp_path / "page.png"
    shown = browse(report, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000")
    assert console_lines(shown.stderr) == []
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert pixels.shape == (2000, 1280, 3)
    assert pixels.std() > 20, "the screenshot is blank"
    # the error badge and border, in their colour, near the top: the findings come before the figures
    red = np.array([int(SEVERITY_COLORS["error"][i:i + 2], 16) for i in (1, 3, 5)])
    rows = np.flatnonzero((np.abs(pixels - red).sum(axis=2) < 30).sum(axis=1) > 0)
    assert rows.size > 20 and rows.min() < 600
