"""What the end-to-end tests share: running the CLI as a user does, and reading a run directory back.

A module with its own name (not conftest) so `from e2e_helpers import ...` cannot pick up another
folder's helpers. Two ways to run the command line:
  `User.run(...)`    cnntricks.cli.main in this process: fast (torch is imported once), exit code
                     and output captured, warnings printed to stderr as the real command prints them;
  `User.spawn(...)`  `python -m cnntricks.cli ...` in a subprocess, for what only a real process
                     shows (SIGKILL, Ctrl-C, the console script, the environment).
Both run in `User.cwd` with HOME, XDG_CACHE_HOME and MPLCONFIGDIR inside the test's tmp_path.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

# A tiny, quick run: 4 synthetic classes of 3x16x16, a two-stage fastnet of width 8.
SMALL = ["data.source=synthetic", "model.width=8", "model.depth=2", "train.threads=1",
         "optim.batch_size=32", "train.epochs=2"]
TIMING_KEYS = ("seconds", "images_per_second")  # the only history fields allowed to differ between runs


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # what pytest shows when an assertion on a result fails
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def user_environment(root: Path) -> dict[str, str]:
    """os.environ with every per-user folder a run might write to moved under `root`."""
    env = dict(os.environ)
    for name, folder in (("HOME", "home"), ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_CONFIG_HOME", "xdg-config"),
                         ("MPLCONFIGDIR", "mpl-config"), ("TMPDIR", "tmp")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / folder)
    env["PYTHONUNBUFFERED"] = "1"  # a killed process has flushed what it printed
    return env


def _show_on_stderr(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_main(*args) -> int:
    """The exit code of cnntricks.cli.main(args) in this process; the caller captures the output (capsys)."""
    from cnntricks import cli
    saved_format = warnings.formatwarning
    with warnings.catch_warnings():
        # pytest records warnings instead of printing them; print them as a plain process would.
        warnings.simplefilter("default")
        warnings.showwarning = _show_on_stderr
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exit:  # argparse: --help (0) and usage errors (2)
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        finally:
            warnings.formatwarning = saved_format
    return code


def train_in_background_folder(root: Path, *args) -> Path:
    """`cnntricks train ARGS --run-dir root/run` in this process, with HOME and the caches under `root`
    and the output swallowed (for module- or session-scoped reference runs); returns the run."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import pytest
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        for name, value in user_environment(root).items():
            if name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
                patch.setenv(name, value)
        code = run_main("train", *args, "--run-dir", run)
    assert code == 0, err.getvalue()
    return run


class User:
    """A user at a shell in `cwd`, with a private HOME and caches (fixture `user`)."""

    def __init__(self, root: Path, capsys):
        self.root, self.capsys = root, capsys
        self.cwd = root / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = user_environment(root)

    def run(self, *args) -> Result:
        self.capsys.readouterr()
        code = run_main(*args)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def command(self, *args) -> list[str]:
        return [sys.executable, "-m", "cnntricks.cli", *map(str, args)]

    def spawn(self, *args, timeout: float = 180) -> Result:
        done = subprocess.run(self.command(*args), cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)

    def start(self, *args) -> Watched:
        return Watched(self.command(*args), cwd=self.cwd, env=self.env)


class Watched:
    """A running CLI process whose output is read as it comes, so a test can act on progress.

    Progress bars (stderr, "epoch 3/6: ...") say an epoch has started; the per-epoch line (stdout,
    "epoch   3/6  train loss ...") says it has been evaluated and its checkpoint is being written.
    """

    def __init__(self, command: list[str], **popen):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
        self.out, self.err = bytearray(), bytearray()
        self.readers = [threading.Thread(target=self._read, args=(stream, buffer), daemon=True)
                        for stream, buffer in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, buffer: bytearray) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            buffer.extend(chunk)

    def wait_for(self, text: str, stream: str = "err", timeout: float = 120) -> bool:
        """True once `text` has appeared on stderr ("err") or stdout ("out"); False if the process ended first."""
        buffer, needle, deadline = getattr(self, stream), text.encode(), time.monotonic() + timeout
        while needle not in buffer:
            if self.process.poll() is not None:
                for reader in self.readers:
                    reader.join(5)
                return needle in buffer
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} on std{stream} after {timeout} s:\n{bytes(buffer[-2000:]).decode()}")
            time.sleep(0.002)
        return True

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def finish(self, timeout: float = 180) -> Result:
        code = self.process.wait(timeout)
        for reader in self.readers:
            reader.join(5)
        return Result(code, self.out.decode(errors="replace"), self.err.decode(errors="replace"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_history(run_dir: Path) -> list[dict]:
    """Every line of history.jsonl, strictly: a damaged line is a failure here."""
    return [json.loads(line) for line in (Path(run_dir) / "history.jsonl").read_text().splitlines()]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def latest_folder(run_dir: Path) -> Path:
    root = Path(run_dir) / "checkpoints"
    return root / (root / "latest").read_text().strip()


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_folder(run_dir) / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if a[name].dtype != b[name].dtype or not torch.equal(a[name], b[name])]
    assert not different, f"tensors that differ: {different}"


def assert_runs_equal(run: Path, reference: Path) -> None:
    """The same numbers, bitwise: summary, final weights and history (timing fields aside)."""
    got, want = read_json(run / "summary.json"), read_json(reference / "summary.json")
    for key in ("test_acc", "test_loss", "best_val_acc", "val_acc", "train_acc", "epochs", "steps", "per_class"):
        assert got[key] == want[key], f"summary.json {key}: {got[key]!r} != {want[key]!r} (uninterrupted)"
    assert_same_weights(final_weights(run), final_weights(reference))
    history, expected = without_timing(read_history(run)), without_timing(read_history(reference))
    assert len(history) == len(expected), f"history.jsonl has {len(history)} lines, uninterrupted {len(expected)}"
    for number, (line, want_line) in enumerate(zip(history, expected), start=1):
        assert line == want_line, f"history.jsonl line {number}: {line} != {want_line}"
    if (reference / "stats.jsonl").exists():  # the monitor's statistics, bitwise too
        stats, expected = (run / "stats.jsonl").read_text(), (reference / "stats.jsonl").read_text()
        assert stats == expected, "stats.jsonl differs from the uninterrupted run's"
